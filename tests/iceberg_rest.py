"""An in-test Iceberg REST catalog server, following the REST catalog spec
(apache/iceberg open-api/rest-catalog-open-api.yaml): config, namespaces and
tables (create, load, exists, commit, list). No package registry here offers
a REST catalog server, so this one keeps its tables in a pyiceberg SqlCatalog
on SQLite and answers in the spec's shapes, with its error bodies
(`{"error": {"message", "type", "code"}}`) and 409 for a commit whose
requirements fail."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

from pyiceberg.catalog.rest import CreateTableRequest, TableResponse
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (CommitFailedException, NamespaceAlreadyExistsError, NoSuchNamespaceError,
                                  NoSuchTableError, TableAlreadyExistsError)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table import CommitTableRequest
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

from harness import free_port

NS_SEP = "\x1f"


class RestCatalog:
    def __init__(self, workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        self.warehouse = workdir / "warehouse"
        self.warehouse.mkdir(exist_ok=True)
        self.catalog = SqlCatalog("rest", uri=f"sqlite:///{workdir}/rest.db", warehouse=f"file://{self.warehouse}")
        self.requests = []
        self.port = free_port()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        rest = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=None):
                data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, code, kind, message):
                self._send(code, {"error": {"message": message, "type": kind, "code": code}})

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _route(self):
                rest.requests.append((self.command, self.path))
                path = urlparse(self.path).path
                parts = [unquote(p) for p in path.strip("/").split("/")]
                if parts[:1] != ["v1"]:
                    return self._error(404, "NotFoundException", f"no route {path}")
                parts = parts[1:]
                try:
                    if parts == ["config"]:
                        return self._send(200, {"defaults": {}, "overrides": {}})
                    if parts == ["namespaces"]:
                        return self._namespaces()
                    if len(parts) == 2 and parts[0] == "namespaces":
                        return self._namespace(tuple(parts[1].split(NS_SEP)))
                    if len(parts) == 3 and parts[0] == "namespaces" and parts[2] == "tables":
                        return self._tables(tuple(parts[1].split(NS_SEP)))
                    if len(parts) == 4 and parts[0] == "namespaces" and parts[2] == "tables":
                        return self._table(tuple(parts[1].split(NS_SEP)), parts[3])
                    return self._error(404, "NotFoundException", f"no route {path}")
                except (NoSuchNamespaceError, NoSuchTableError) as e:
                    return self._error(404, type(e).__name__, str(e))
                except (NamespaceAlreadyExistsError, TableAlreadyExistsError) as e:
                    return self._error(409, "AlreadyExistsException", str(e))
                except CommitFailedException as e:
                    return self._error(409, "CommitFailedException", str(e))

            def _namespaces(self):
                if self.command == "GET":
                    return self._send(200, {"namespaces": [list(n) for n in rest.catalog.list_namespaces()]})
                req = json.loads(self._body())
                rest.catalog.create_namespace(tuple(req["namespace"]), req.get("properties") or {})
                return self._send(200, {"namespace": req["namespace"], "properties": req.get("properties") or {}})

            def _namespace(self, ns):
                props = rest.catalog.load_namespace_properties(ns)
                if self.command == "HEAD":
                    return self._send(204)
                return self._send(200, {"namespace": list(ns), "properties": props})

            def _tables(self, ns):
                if self.command == "GET":
                    ids = [{"namespace": list(t[:-1]), "name": t[-1]} for t in rest.catalog.list_tables(ns)]
                    return self._send(200, {"identifiers": ids})
                body = json.loads(self._body())
                # Optional in the spec, required by pyiceberg's model.
                for k in ("location", "partition-spec", "write-order"):
                    body.setdefault(k, None)
                req = CreateTableRequest.model_validate(body)
                t = rest.catalog.create_table(
                    ns + (req.name,), req.table_schema, location=req.location,
                    partition_spec=req.partition_spec or UNPARTITIONED_PARTITION_SPEC,
                    sort_order=req.write_order or UNSORTED_SORT_ORDER, properties=req.properties)
                return self._load_result(t)

            def _table(self, ns, name):
                ident = ns + (name,)
                if self.command == "HEAD":
                    rest.catalog.load_table(ident)
                    return self._send(204)
                if self.command == "GET":
                    return self._load_result(rest.catalog.load_table(ident))
                if self.command == "DELETE":
                    rest.catalog.drop_table(ident)
                    return self._send(204)
                body = json.loads(self._body() or b"{}")
                body.setdefault("identifier", {"namespace": list(ns), "name": name})
                req = CommitTableRequest.model_validate(body)
                table = rest.catalog.load_table(ident)
                resp = rest.catalog.commit_table(table, req.requirements, req.updates)
                return self._send(200, resp.model_dump_json(by_alias=True, exclude_none=True).encode())

            def _load_result(self, t):
                r = TableResponse(**{"metadata-location": t.metadata_location, "metadata": t.metadata, "config": {}})
                return self._send(200, r.model_dump_json(by_alias=True, exclude_none=True).encode())

            do_GET = do_POST = do_HEAD = do_DELETE = _route

        return Handler
