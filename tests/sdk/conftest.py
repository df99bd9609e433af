"""Fixtures: simulated providers of every API and the real sidecar binary, on loopback.

`switchyard-sim` (the binary of the sim crate) serves an OpenAI, an Anthropic, a Gemini, an
Azure OpenAI, a Bedrock and a Vertex AI simulated provider and prints their base URLs (Azure's
twice: its `/openai/v1` API and its resource root for classic deployment URLs) and the clouds'
credentials (Bedrock's static keys, a Vertex service account key file); the sidecar serves a pool with one provider of
each API and one route per provider, so every test can run against every upstream protocol.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
ROUTES = ["via-openai", "via-anthropic", "via-gemini", "via-azure", "via-azure-classic", "via-bedrock",
          "via-vertex", "via-vertex-claude"]
# Embedding routes: Anthropic, Bedrock and Vertex AI serve none through the sidecar.
EMBED_ROUTES = ["embed-via-openai", "embed-via-gemini", "embed-via-azure", "embed-via-azure-classic"]
EMBED_MODELS = {"openai": "text-embedding-3-small", "gemini": "text-embedding-004",
                "azure": "text-embedding-3-small", "azure-classic": "text-embedding-3-large"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifests(urls: dict) -> str:
    providers = {
        "openai": ("OpenAI", urls["openai"], "gpt-4o-mini"),
        "anthropic": ("Anthropic", urls["anthropic"], "claude-sonnet-4"),
        "gemini": ("Gemini", urls["gemini"], "gemini-2.5-flash"),
        "azure": ("AzureOpenAI", urls["azure"], "gpt-4o"),
        "azure-classic": ("AzureOpenAI", urls["azure_resource"], "gpt-4o-prod"),
        "bedrock": ("Bedrock", urls["bedrock"], "anthropic.claude-3-5-haiku-20241022-v1:0"),
        "vertex": ("VertexAI", urls["vertex"], "gemini-2.5-flash"),
        "vertex-claude": ("VertexAI", urls["vertex"], "claude-sonnet-4@20250514"),
    }
    # Provider settings beyond the common ones: the classic deployment URL shape, and the clouds'
    # own credentials instead of an API key.
    vertex = {"region": "us-east5",
              "gcp": {"project": urls["vertex_project"],
                      "serviceAccountKeySecretRef": {"name": "gcp", "key": "key.json"}}}
    settings = {
        "azure-classic": {"azure": {"apiVersion": "2024-10-21"}},
        "bedrock": {"region": urls["bedrock_region"], "aws": {"credentialsSecretRef": {"name": "aws"}}},
        "vertex": vertex,
        "vertex-claude": vertex,
    }
    publishers = {"vertex": "Google", "vertex-claude": "Anthropic"}
    keyless = {"bedrock", "vertex", "vertex-claude"}
    docs = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
         "stringData": {name: f"sk-{name}-sdk-test" for name in providers}},
        {"apiVersion": "switchyard.dev/v1alpha1", "kind": "ProviderPool", "metadata": {"name": "sdk"},
         "spec": {"providers": [
             {"name": name, "api": api, "baseUrl": url,
              **({} if name in keyless else {"apiKey": {"secretKeyRef": {"name": "keys", "key": name}}}),
              "timeouts": {"total": "10s", "firstToken": "5s", "idle": "5s"},
              "models": [{"name": model, "inputPerMillion": "1.00", "outputPerMillion": "2.00",
                          **({"publisher": publishers[name]} if name in publishers else {})}]
              + ([{"name": EMBED_MODELS[name], "type": "Embedding", "inputPerMillion": "0.02", "outputPerMillion": "0"}]
                 if name in EMBED_MODELS else []),
              **settings.get(name, {})}
             for name, (api, url, model) in providers.items()]}},
    ]
    for name, model in EMBED_MODELS.items():
        docs.append({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
                     "metadata": {"name": f"embed-via-{name}"},
                     "spec": {"model": f"embed-via-{name}",
                              "targets": [{"pool": "sdk", "provider": name, "model": model}]}})
    for name, (_, _, model) in providers.items():
        docs.append({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
                     "metadata": {"name": f"via-{name}"},
                     "spec": {"model": f"via-{name}",
                              "targets": [{"pool": "sdk", "provider": name, "model": model}]}})
    # The OpenAI simulator also serves the Responses API: a provider that declares it gets
    # `POST /v1/responses` passed through (route `via-responses-api`).
    docs[1]["spec"]["providers"].append(
        {"name": "openai-responses", "api": "OpenAI", "baseUrl": urls["openai"], "responsesApi": True,
         "apiKey": {"secretKeyRef": {"name": "keys", "key": "openai"}},
         "timeouts": {"total": "10s", "firstToken": "5s", "idle": "5s"},
         "models": [{"name": "gpt-4.1", "inputPerMillion": "2.00", "outputPerMillion": "8.00"}]})
    docs.append({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
                 "metadata": {"name": "via-responses-api"},
                 "spec": {"model": "via-responses-api",
                          "targets": [{"pool": "sdk", "provider": "openai-responses", "model": "gpt-4.1"}]}})
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws"},
                 "stringData": {"accessKeyId": urls["bedrock_access_key_id"],
                                "secretAccessKey": urls["bedrock_secret_access_key"]}})
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gcp"},
                 "stringData": {"key.json": urls["vertex_key_file"]}})
    # JSON is YAML: no YAML library needed.
    return "\n---\n".join(json.dumps(d) for d in docs)


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {seconds}s")


@pytest.fixture(scope="session")
def sidecar():
    """The base URL of a running sidecar (`http://127.0.0.1:PORT`)."""
    # The simulator serves until its stdin closes, so it cannot outlive this session.
    sim = subprocess.Popen([str(TARGET / "switchyard-sim")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    processes = [sim]
    try:
        urls = json.loads(sim.stdout.readline())
        workdir = tempfile.mkdtemp(prefix="switchyard-sdk-")
        Path(workdir, "manifests.yaml").write_text(manifests(urls))
        port, admin = free_port(), free_port()
        log = open(Path(workdir, "sidecar.log"), "w")
        side = subprocess.Popen(
            [str(TARGET / "switchyard-sidecar"), "--manifests", workdir,
             "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", "--debug-listen", ""],
            stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        processes.append(side)
        wait_ready(f"http://127.0.0.1:{admin}/readyz", side)
        yield f"http://127.0.0.1:{port}"
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
