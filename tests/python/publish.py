"""Publish job messages to landlord the way a non-Rust producer would.

Usage: publish.py AMQP_URL EXCHANGE ROUTING_KEY < messages.json

stdin holds a JSON list of {"body": <object or string>, "valid": bool}. Objects
are serialized as JSON; strings are sent as raw bytes (for malformed input).
Every message marked valid is first checked against schemas/job-message.v1.json
with the jsonschema package, every object marked invalid must fail that check,
so the schema and the worker are tested against each other.
Publishes with delivery confirms and exits non-zero if any publish is refused.
"""

import json
import pathlib
import sys

import jsonschema
import pika

SCHEMA = json.loads(
    (pathlib.Path(__file__).resolve().parents[2] / "schemas" / "job-message.v1.json").read_text()
)


def main() -> int:
    url, exchange, routing_key = sys.argv[1:4]
    messages = json.load(sys.stdin)
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for m in messages:
        body = m["body"]
        if isinstance(body, dict) or isinstance(body, list):
            errors = list(validator.iter_errors(body))
            if m["valid"] and errors:
                print(f"schema rejects a message meant to be valid: {errors[0].message}", file=sys.stderr)
                return 3
            if not m["valid"] and not errors:
                print(f"schema accepts a message meant to be invalid: {body}", file=sys.stderr)
                return 3
            data = json.dumps(body).encode()
        else:
            data = body.encode()
        m["bytes"] = data

    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    for m in messages:
        ch.basic_publish(
            exchange=exchange,
            routing_key=routing_key,
            body=m["bytes"],
            properties=pika.BasicProperties(content_type="application/json", delivery_mode=2),
            mandatory=True,
        )
    conn.close()
    print(f"published {len(messages)} message(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
