"""Verifies one webhook delivery with the independent Standard Webhooks library.

Usage: webhook_check.py SECRET HEADERS_JSON BODY_FILE
Exits 0 and prints the event type when the signature verifies; exits 1 with the library's
reason on stderr when it does not; exits 2 when the library is missing.
"""

import json
import sys

try:
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError
except ModuleNotFoundError as e:
    print(f"ModuleNotFoundError: {e}: run scripts/test, which installs standardwebhooks", file=sys.stderr)
    sys.exit(2)


def main() -> int:
    secret, headers_json, body_file = sys.argv[1:4]
    headers = json.loads(headers_json)
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        payload = Webhook(secret).verify(body, headers)
    except WebhookVerificationError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(payload["type"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
