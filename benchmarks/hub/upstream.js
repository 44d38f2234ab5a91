// SPDX-License-Identifier: GPL-3.0-or-later
// A user's service for the Hub benchmark: one small answer, as fast as Node serves it.
"use strict";
const http = require("http");
http.createServer((request, response) => {
  response.setHeader("Content-Type", "text/plain");
  response.end("hello from alice\n");
}).listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
