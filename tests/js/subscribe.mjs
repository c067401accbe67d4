// SubscribeToShard from the AWS SDK for JavaScript v3, which speaks HTTP/2
// to Kinesis (h2c on an http:// endpoint). Puts records with the same client
// first if asked, then prints one JSON line per event received and a last
// line when the subscription ends.
//
// node subscribe.mjs ENDPOINT STREAM CONSUMER_ARN SHARD_ID TYPE [SEQUENCE] [--put N] [--until N]
import { KinesisClient, PutRecordsCommand, SubscribeToShardCommand } from "@aws-sdk/client-kinesis";

const [endpoint, stream, consumerARN, shardId, type, ...rest] = process.argv.slice(2);
const flag = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? Number(rest[i + 1]) : undefined;
};
const sequence = rest[0] && !rest[0].startsWith("--") ? rest[0] : undefined;
const client = new KinesisClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
});

const put = flag("--put");
if (put) {
  const records = [];
  for (let i = 0; i < put; i++) {
    records.push({ Data: new TextEncoder().encode(JSON.stringify({ js: i })), PartitionKey: `js-${i}` });
  }
  const r = await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
  console.log(JSON.stringify({ put: records.length, failed: r.FailedRecordCount }));
}

const until = flag("--until");
const position = { Type: type };
if (sequence) position.SequenceNumber = sequence;
const out = await client.send(new SubscribeToShardCommand({ ConsumerARN: consumerARN, ShardId: shardId, StartingPosition: position }));
let received = 0;
for await (const event of out.EventStream) {
  if (!event.SubscribeToShardEvent) {
    console.log(JSON.stringify({ other: Object.keys(event) }));
    continue;
  }
  const e = event.SubscribeToShardEvent;
  received += e.Records.length;
  console.log(JSON.stringify({
    records: e.Records.map((r) => ({ seq: r.SequenceNumber, data: new TextDecoder().decode(r.Data), key: r.PartitionKey })),
    continuation: e.ContinuationSequenceNumber,
    behind: e.MillisBehindLatest,
    children: (e.ChildShards || []).map((c) => c.ShardId),
  }));
  if (until !== undefined && received >= until) break;
}
console.log(JSON.stringify({ end: true, received }));
process.exit(0);
