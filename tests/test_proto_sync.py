"""The committed generated gRPC code matches controlplane/protos (regenerated here)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent / "controlplane"


def test_generated_code_matches_the_proto(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", "rollway/proto/routemap.proto"],
                   check=True, cwd=ROOT)
    for name in ("routemap_pb2.py", "routemap_pb2_grpc.py", "routemap_pb2.pyi"):
        assert (tmp_path / "rollway" / "proto" / name).read_text() == \
            (ROOT / "rollway" / "proto" / name).read_text(), f"{name} is stale: regenerate it (see the test)"
