// A log-pipeline transform in JavaScript: parses each JSON log line, drops
// debug lines, redacts e-mail addresses and bearer tokens in `msg`, adds the
// field `env` from the stream's config, and partitions by `service`.
//
// Config (`transform.config` in the stream's YAML), all optional:
// {"env": "prod", "drop_levels": ["debug"]}

const EMAIL = /[^\s@]+@[^\s@]+\.[^\s@]+/g;
const BEARER = /(bearer\s+)\S+/gi;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

const settings = { env: "unknown", dropLevels: ["debug"] };

// `init` returns normally for ok; a thrown string becomes the error.
export function init(config) {
  if (config.trim() === "") return;
  let given;
  try {
    given = JSON.parse(config);
  } catch (e) {
    throw `config is not JSON: ${e.message}`;
  }
  if ("env" in given) {
    if (typeof given.env !== "string") throw "config.env must be a string";
    settings.env = given.env;
  }
  if ("drop_levels" in given) {
    settings.dropLevels = given.drop_levels.map((l) => String(l).toLowerCase());
  }
}

export function transform(batch) {
  return batch.map(one);
}

function one(record) {
  let event;
  try {
    event = JSON.parse(decoder.decode(record.data));
  } catch (e) {
    return { tag: "failed", val: `record is not JSON: ${e.message}` };
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    return { tag: "failed", val: "record is JSON but not an object" };
  }
  if (settings.dropLevels.includes(String(event.level ?? "").toLowerCase())) {
    return { tag: "dropped" };
  }
  if (typeof event.msg === "string") {
    event.msg = event.msg.replace(EMAIL, "<email>").replace(BEARER, "$1<token>");
  }
  event.env = settings.env;
  const service = typeof event.service === "string" ? event.service : "unknown";
  return {
    tag: "ok",
    val: {
      data: encoder.encode(JSON.stringify(event) + "\n"),
      partitionKeys: [["service", service]],
    },
  };
}
