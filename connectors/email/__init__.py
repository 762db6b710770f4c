"""Email: IMAP in (imapclient, IDLE), an optional SMTP listener in (aiosmtpd), SMTP out (aiosmtplib).

- `connector.EmailConnector`: the `email` kind; `settings.EmailSettings`: its pinned config keys.
- `parse.parse_email`: raw RFC 5322 bytes -> messages, delivery reports and files to keep (pure).
- `parse.ingest_email`: parse, keep the files, record durably (what IMAP and the listener call).
- `compose.compose`: an Outbound -> a threaded multipart/alternative EmailMessage.
- `listener.SmtpListener`: the aiosmtpd server for deployments whose MTA forwards to us.
- `imap.run_imap`: the IMAP poller.
"""
