// The Node.js comparison of benches/fanout.sh: a `ws` server on 127.0.0.1:PORT (first argument, default 9001) that
// sends every message it receives to every open client, sender included (the broadcast of the `ws` README).
const { WebSocket, WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 9001);
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    for (const client of server.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
