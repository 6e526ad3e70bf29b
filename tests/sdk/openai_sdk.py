"""The official `openai` Python SDK, unchanged, against docent's
OpenAI-compatible API: chat, streaming chat and embeddings. Starts the real
`docent serve` (DOCENT_BIN) on port 0 with the real models."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from openai import OpenAI

DOC = b"# Lab safety\n\n## Eye wash\n\nThe eye wash station is next to the north exit of laboratory B.\n"


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="docent-sdk-")
    env = dict(os.environ, DOCENT__STORAGE__DATA_DIR=os.path.join(tmp, "data"),
               DOCENT__MODELS__DIR=os.environ["DOCENT_TEST_MODELS"], DOCENT_LOG="warn")
    server = subprocess.Popen([os.environ["DOCENT_BIN"], "serve", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, text=True)
    passed = failed = 0
    try:
        base = None
        for line in server.stdout:
            m = re.search(r"docent listening on (http://\S+)", line)
            if m:
                base = m.group(1)
                break
        assert base, "server did not start"
        client = OpenAI(base_url=base + "/v1", api_key="unused")

        # Upload a document through the native API (the SDK has no such call).
        import urllib.request
        boundary = "docentboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"lab.md\"\r\n"
                f"Content-Type: text/markdown\r\n\r\n").encode() + DOC + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(base + "/v1/documents", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        import json
        import time
        job = json.load(urllib.request.urlopen(req))["job_id"]
        for _ in range(600):
            status = json.load(urllib.request.urlopen(f"{base}/v1/jobs/{job}"))["status"]
            if status in ("ready", "failed"):
                break
            time.sleep(0.1)
        assert status == "ready", status

        question = "Where is the eye wash station?"
        checks = []

        def chat():
            r = client.chat.completions.create(model="docent", messages=[{"role": "user", "content": question}])
            text = r.choices[0].message.content
            cites = (r.model_extra or {}).get("citations") or []
            assert cites and cites[0]["title"] in ("Lab safety", "lab.md"), (text, cites)
            assert "[" in text, text
            print("chat:", text)
        checks.append(("chat", chat))

        def stream():
            parts, cites = [], None
            for chunk in client.chat.completions.create(
                    model="docent", stream=True, messages=[{"role": "user", "content": question}]):
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                extra = chunk.model_extra or {}
                if extra.get("citations"):
                    cites = extra["citations"]
            assert len(parts) > 1, parts
            assert cites, "no citations in the stream"
            print("stream:", "".join(parts))
        checks.append(("stream", stream))

        def embeddings():
            r = client.embeddings.create(model="docent", input=["eye wash", "north exit"])
            assert len(r.data) == 2 and len(r.data[0].embedding) == 384
        checks.append(("embeddings", embeddings))

        for name, fn in checks:
            try:
                fn()
                passed += 1
            except Exception as e:  # noqa: BLE001 - report every failure
                failed += 1
                print(f"{name} FAILED: {e!r}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"sdk: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
