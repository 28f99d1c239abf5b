"""``rollway override mint``: a signed test override for one request's header.

The filter routes a request carrying ``x-rw-override: stage=S;version=V;exp=UNIX;mac=HEX``
to that stage and version when the MAC is HMAC-SHA256(operator secret, everything before
``;mac=``) and ``exp`` is in the future but no further than the filter's
``override.max_ttl_seconds`` (at most 7 days). This prints such a header, so nobody computes
the MAC by hand::

    rollway override mint --stage canary --version v42 --ttl 3600 --key-file secrets.json --key-id ops
    x-rw-override: stage=canary;version=v42;exp=1790000000;mac=3f1c...

``--key-file`` is the filter's secrets file (a JSON object of key id -> secret; ``--key-id``
picks one, needed when it holds several) or a file holding the secret alone. The secret is
never printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from rollway.cli.errors import CommandError, UsageError

# The filter's own limits (native/src/config.cc): names of letters, digits and . _ - +, at
# most 128 characters; an override at most 7 days ahead (override.max_ttl_seconds' ceiling).
_NAME = re.compile(r"[A-Za-z0-9._+-]{1,128}")
MAX_TTL_SECONDS = 7 * 86400
DEFAULT_HEADER = "x-rw-override"


def read_secret(path: str, key_id: str | None) -> bytes:
    """The operator secret from a secrets file or a file holding the secret alone."""
    from rollway.cli.main import read_file

    text = read_file(path, "key file")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        if key_id is None:
            if len(doc) != 1:
                raise UsageError(f"{path!r} holds {len(doc)} keys: choose one with --key-id")
            key_id = next(iter(doc))
        secret = doc.get(key_id)
        if not isinstance(secret, str):
            raise CommandError(f"{path!r} has no string secret for key id {key_id!r}")
    else:
        if key_id is not None:
            raise UsageError(f"--key-id {key_id!r}: {path!r} is not a secrets file (a JSON object)")
        secret = text.strip()
    if not secret:
        raise CommandError(f"the secret in {path!r} is empty")
    return secret.encode()


def mint(secret: bytes, stage: str | None, version: str | None, expires_at: int) -> str:
    """The header value: the signed fields, then ``;mac=`` and the HMAC in lowercase hex."""
    from rollway._core import hmac_sha256

    fields = [f"stage={stage}"] if stage else []
    fields += [f"version={version}"] if version else []
    signed = ";".join([*fields, f"exp={expires_at}"])
    return f"{signed};mac={hmac_sha256(secret, signed.encode()).hex()}"


def cmd_mint(args: argparse.Namespace) -> int:
    if not args.stage and not args.version:
        raise UsageError("override mint needs --stage, --version or both")
    for flag, value in (("--stage", args.stage), ("--version", args.version)):
        if value is not None and not _NAME.fullmatch(value):
            raise UsageError(f"{flag} {value!r}: letters, digits and . _ - + only, 1 to 128 characters")
    if not 0 < args.ttl <= MAX_TTL_SECONDS:
        raise UsageError(f"--ttl {args.ttl}: between 1 and {MAX_TTL_SECONDS} seconds (the filter's ceiling)")
    if not _NAME.fullmatch(args.header):
        raise UsageError(f"--header {args.header!r}: not a header name")
    secret = read_secret(args.key_file, args.key_id)
    now = int(args.now if args.now is not None else time.time())
    value = mint(secret, args.stage, args.version, now + args.ttl)
    if args.json:
        json.dump({"header": args.header.lower(), "value": value, "expires_at": now + args.ttl}, sys.stdout)
        print()
    elif args.value_only:
        print(value)
    else:
        print(f"{args.header.lower()}: {value}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    override = sub.add_parser("override", help="signed test overrides (route one request to a chosen version)")
    osub = override.add_subparsers(dest="override_command", required=True)
    p = osub.add_parser("mint", help="print a signed override header", description=__doc__.split("\n\n")[1])
    p.add_argument("--stage", help="the stage to route to")
    p.add_argument("--version", help="the version to route to (with --stage: inside that stage)")
    p.add_argument("--ttl", type=int, required=True, metavar="SECONDS", help="how long the header is accepted")
    p.add_argument("--key-file", required=True, metavar="FILE",
                   help="the filter's secrets file (JSON key id -> secret) or a file holding the secret")
    p.add_argument("--key-id", help="which key of the secrets file (the filter config's override.key_id)")
    p.add_argument("--header", default=DEFAULT_HEADER, help=f"the header's name (default {DEFAULT_HEADER})")
    p.add_argument("--now", type=float, help=argparse.SUPPRESS)   # tests: a fixed clock
    out = p.add_mutually_exclusive_group()
    out.add_argument("--value-only", action="store_true", help="print only the header's value")
    out.add_argument("--json", action="store_true", help="header, value and expiry as JSON")
    p.set_defaults(func=cmd_mint)
