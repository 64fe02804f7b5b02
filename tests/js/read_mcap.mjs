import { McapIndexedReader } from "@mcap/core";
import { loadDecompressHandlers } from "@mcap/support";
import { open } from "node:fs/promises";
const path = process.argv[2];
const fh = await open(path, "r");
const readable = {
  size: async () => BigInt((await fh.stat()).size),
  read: async (offset, length) => {
    const buf = new Uint8Array(Number(length));
    await fh.read(buf, 0, Number(length), Number(offset));
    return buf;
  },
};
const reader = await McapIndexedReader.Initialize({ readable, decompressHandlers: await loadDecompressHandlers() });
let n = 0; const topics = new Set(); const encodings = new Set(); const schemas = new Set();
for await (const m of reader.readMessages()) {
  n++; const ch = reader.channelsById.get(m.channelId); topics.add(ch.topic); encodings.add(ch.messageEncoding);
  schemas.add(reader.schemasById.get(ch.schemaId)?.encoding);
  JSON.parse(new TextDecoder().decode(m.data));
}
console.log(JSON.stringify({ profile: reader.header.profile, messages: n, topics: topics.size, encodings: [...encodings], schemas: [...schemas], metadata: reader.metadataIndexes.map(i => i.name) }));
