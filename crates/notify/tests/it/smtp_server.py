"""A real SMTP server for kbz-notify's tests (aiosmtpd, Debian's python3-aiosmtpd).

Usage: smtp_server.py OUT_DIR MODE [CERT KEY]
  MODE is plain, starttls or tls (implicit TLS). With KBZ_TEST_SMTP_USER and
  KBZ_TEST_SMTP_PASSWORD in the environment, authentication is required.
Each received message is parsed and written as OUT_DIR/msg-N.json before the server
answers 250. The listening port is printed on the first line of stdout.
"""

import asyncio
import json
import os
import socket
import ssl
import sys
from email import message_from_bytes, policy

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

out_dir, mode = sys.argv[1], sys.argv[2]
user = os.environ.get("KBZ_TEST_SMTP_USER")
password = os.environ.get("KBZ_TEST_SMTP_PASSWORD")

tls_context = None
if mode in ("starttls", "tls"):
    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(sys.argv[3], sys.argv[4])


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "content_type": msg.get_content_type(),
            "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
            "authenticated_as": (
                session.auth_data.login.decode()
                if isinstance(session.auth_data, LoginPassword)
                else None
            ),
            "tls": session.ssl is not None or mode == "tls",
        }
        self.count += 1
        path = os.path.join(out_dir, "msg-%d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


handler = Handler()


def factory():
    kwargs = dict(hostname="kbz-test-smtp")
    if mode == "starttls":
        kwargs.update(tls_context=tls_context, require_starttls=True)
    if user is not None:
        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # Implicit TLS is encrypted from the start; aiosmtpd only knows about STARTTLS.
            auth_require_tls=(mode == "starttls"),
        )
    return SMTP(handler, **kwargs)


sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(16)
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
server = loop.run_until_complete(
    loop.create_server(
        factory, sock=sock, ssl=tls_context if mode == "tls" else None
    )
)
print(sock.getsockname()[1], flush=True)
loop.run_forever()
