// The Node.js comparison of benches/run.sh: a `ws` echo server on 127.0.0.1:PORT (first argument, default 9001).
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 9001);
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
