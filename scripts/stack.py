#!/usr/bin/env python3
"""The local AWS stack: one moto server on a loopback port, configured the way synmigrate needs it.

- Step Functions executes state machines (moto's `execute_state_machine`).
- Lambda needs no Docker: its simple backend's `invoke` is replaced so that a Task state calls the real
  function code, forwarded over HTTP to a Lambda runtime emulator (`cargo lambda watch`, given with
  `--lambda-invoke-url`). A function error comes back as a Lambda `FunctionError`, so Retry/Catch work.
- S3 behaves like S3 where moto is lenient and the migration depends on it: presigned URLs stop working
  after `X-Amz-Expires`, and `x-amz-copy-source-if-match` is checked on copies.
- S3 ListParts answers with the `ListPartsResult` root element S3 sends (moto 5.2 names it
  `ListPartsResponse`, which boto3 ignores but the Rust SDK refuses).
- DynamoDB requests are served one at a time: moto checks a write's condition and applies the write
  in two steps, so two racing conditional writes could both win; real DynamoDB makes them atomic.

It prints `AWS_ENDPOINT_URL=...` and the dummy credentials as `KEY=value` lines, then `READY`, and runs
until SIGINT/SIGTERM, or until its standard input closes when started with `--stop-on-stdin-eof` (so a
test process that dies never leaves a server behind).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import s3_backends
from werkzeug.serving import BaseWSGIServer, make_server

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
}


def configure_moto() -> None:
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    default_user_config["lambda"] = {"use_docker": False}
    default_user_config["batch"] = {"use_docker": False}


def forward_lambda_invocations(invoke_url: str | None, timeout_s: float) -> None:
    """Replaces moto's simple Lambda so that invocations reach the real function code."""

    def invoke(self, function_name, qualifier, body, headers, response_headers):  # noqa: ANN001
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        if invoke_url is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": "Local.NoFunctionRuntime",
                    "errorMessage": f"the local stack was started without --lambda-invoke-url; cannot run {name}",
                }
            ).encode()
        url = f"{invoke_url.rstrip('/')}/2015-03-31/functions/{urllib.parse.quote(name)}/invocations"
        payload = body if isinstance(body, bytes) else (body or "{}").encode()
        request = urllib.request.Request(url, data=payload, method="POST")
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if response.headers.get("x-amz-function-error"):
                    response_headers["x-amz-function-error"] = response.headers["x-amz-function-error"]
                return response.read()
        except urllib.error.HTTPError as error:
            # The runtime emulator answers a failed invocation with an error status and the error as JSON.
            response_headers["x-amz-function-error"] = "Unhandled"
            return error.read() or json.dumps(
                {"errorType": "Local.InvokeFailed", "errorMessage": f"HTTP {error.code} from {name}"}
            ).encode()
        except (urllib.error.URLError, TimeoutError) as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {"errorType": "Local.InvokeFailed", "errorMessage": f"cannot reach {name}: {error}"}
            ).encode()

    LambdaSimpleBackend.invoke = invoke


def s3_error(start_response, status: str, code: str, message: str):  # noqa: ANN001
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
    return [body]


def presigned_url_expired(query: dict[str, list[str]], now: dt.datetime) -> bool:
    """SigV4 (`X-Amz-Date` + `X-Amz-Expires`) or SigV2 (`Expires`, epoch seconds) query authentication."""
    date = query.get("X-Amz-Date", [None])[0]
    expires = query.get("X-Amz-Expires", [None])[0]
    if date and expires:
        signed_at = dt.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        return now > signed_at + dt.timedelta(seconds=int(expires))
    v2_expires = query.get("Expires", [None])[0]
    if v2_expires and "Signature" in query:
        return now.timestamp() > int(v2_expires)
    return False


def source_etag(copy_source: str) -> str | None:
    """The current ETag of `bucket/key` named by an x-amz-copy-source header, or None if absent."""
    path = urllib.parse.unquote(urllib.parse.urlparse(copy_source).path).lstrip("/")
    if "/" not in path:
        return None
    bucket, key = path.split("/", 1)
    backend = s3_backends[ACCOUNT_ID]["aws"]
    try:
        obj = backend.get_object(bucket, key)
    except Exception:  # noqa: BLE001 - moto raises its own not-found types
        return None
    return obj.etag.strip('"') if obj else None


class AwsSemantics:
    """WSGI middleware restoring the S3 and DynamoDB guarantees moto skips and the migration relies on."""

    def __init__(self, app):  # noqa: ANN001
        self.app = app
        self.dynamodb = threading.Lock()

    def __call__(self, environ, start_response):  # noqa: ANN001
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self.dynamodb:
                return list(self.app(environ, start_response))
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if presigned_url_expired(query, dt.datetime.now(dt.timezone.utc)):
            return s3_error(start_response, "403 Forbidden", "AccessDenied", "Request has expired")
        copy_source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if_match = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
        if environ.get("REQUEST_METHOD") == "PUT" and copy_source and if_match:
            current = source_etag(copy_source)
            if current is not None and current != if_match.strip('"'):
                return s3_error(
                    start_response,
                    "412 Precondition Failed",
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                )
        if environ.get("REQUEST_METHOD") == "GET" and "uploadId" in query:
            return list_parts_result(self.app, environ, start_response)
        return self.app(environ, start_response)


def list_parts_result(app, environ, start_response):  # noqa: ANN001
    """Runs a ListParts request and renames moto's `ListPartsResponse` root to S3's `ListPartsResult`."""
    captured: dict = {}

    def capture(status, headers, exc_info=None):  # noqa: ANN001
        captured["status"], captured["headers"] = status, headers
        return lambda _data: None

    body = b"".join(app(environ, capture))
    body = body.replace(b"<ListPartsResponse", b"<ListPartsResult", 1)
    body = body.replace(b"</ListPartsResponse>", b"</ListPartsResult>", 1)
    headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
    start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
    return [body]


def start_server(host: str, port: int) -> BaseWSGIServer:
    app = AwsSemantics(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--lambda-invoke-url", help="Lambda runtime emulator, e.g. http://127.0.0.1:9000")
    parser.add_argument("--lambda-timeout", type=float, default=900.0, help="seconds per invocation")
    parser.add_argument("--stop-on-stdin-eof", action="store_true", help="exit when stdin closes")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the local stack binds to loopback only")

    configure_moto()
    forward_lambda_invocations(args.lambda_invoke_url, args.lambda_timeout)
    server = start_server(args.host, args.port)
    host, port = server.server_address[:2]
    # Step Functions reaches Lambda and S3 (ItemReader) through boto3 clients aimed at this port.
    os.environ["MOTO_PORT"] = str(port)

    print(f"AWS_ENDPOINT_URL=http://{host}:{port}")
    for key, value in CREDENTIALS.items():
        print(f"{key}={value}")
    print("READY", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.stop_on_stdin_eof:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
