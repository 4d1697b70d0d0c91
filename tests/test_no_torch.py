"""The runtime side (rawedge core, runtimes) imports and works without torch."""
import subprocess
import sys

CODE = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.') or name == 'kornia':
            raise ImportError('torch is blocked in this test')
sys.meta_path.insert(0, Block())
import rawedge, rawedge.types, rawedge.io.raw, rawedge.io.dng, rawedge.io.photo, rawedge.isp.ops
import rawedge.isp.pipeline, rawedge.profiles, rawedge.cli
import rawedge.runtimes
import pkgutil, importlib
for m in pkgutil.walk_packages(rawedge.runtimes.__path__, 'rawedge.runtimes.'):
    importlib.import_module(m.name)
assert 'torch' not in sys.modules
print('ok')
"""


def test_core_and_runtimes_import_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
