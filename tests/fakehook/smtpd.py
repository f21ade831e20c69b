#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""smtpd: a real SMTP server (Debian's python3-aiosmtpd) for the email
sink's tests, on 127.0.0.1 and a port the OS picks (or --port).

  --tls starttls   STARTTLS offered and required before MAIL and AUTH
  --tls implicit   TLS from the first byte (smtps://)
  --tls none       plain (only with a loopback client, as remedyd allows)
  --cert/--key     the server certificate (PEM)
  --user/--password  require AUTH (PLAIN or LOGIN) with these
  --reject-first N   answer the first N messages' DATA "451 4.3.0" (transient)
  --outdir DIR     each accepted message becomes DIR/NNNN.json:
                   {"mail_from", "rcpt_tos", "data" (the raw message as
                    received, dot-unstuffed by the server), "auth_user", "tls"}
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def auth_user(data):
    if isinstance(data, LoginPassword):
        data = data.login
    return data.decode() if isinstance(data, bytes) else data


class Handler:
    def __init__(self, outdir, reject_first):
        self.outdir = outdir
        self.reject_left = reject_first
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.reject_left > 0:
            self.reject_left -= 1
            return "451 4.3.0 try again later"
        self.count += 1
        rec = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
               "data": envelope.original_content.decode("utf-8", "replace"),
               "auth_user": auth_user(session.auth_data),
               "tls": session.ssl is not None}
        path = os.path.join(self.outdir, "%04d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f)
        os.replace(path + ".tmp", path)
        return "250 2.0.0 accepted"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--tls", choices=("starttls", "implicit", "none"), default="starttls")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--reject-first", type=int, default=0)
    a = ap.parse_args()

    ctx = None
    if a.tls != "none":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    handler = Handler(a.outdir, a.reject_first)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user
              and auth_data.password.decode() == a.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    def factory():
        return SMTP(handler, hostname="fake-smtp.test",
                    tls_context=ctx if a.tls == "starttls" else None,
                    require_starttls=a.tls == "starttls",
                    authenticator=authenticator if a.user else None,
                    auth_required=bool(a.user), auth_require_tls=a.tls == "starttls")

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(factory, a.host, a.port,
                                                        ssl=ctx if a.tls == "implicit" else None,
                                                        reuse_address=True))
    port = server.sockets[0].getsockname()[1]
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % port)
    os.replace(a.port_file + ".tmp", a.port_file)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    sys.stderr.write("smtpd: listening on %s:%d (%s)\n" % (a.host, port, a.tls))
    loop.run_forever()


if __name__ == "__main__":
    main()
