"""Missing audio libraries stop `default` before any work, saying what to install; `labels` needs none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def without(*packages: str) -> str:
    """Code after which ``packages`` are absent as on a machine without them: ``import`` finds no module and
    ``importlib.util.find_spec`` returns None (a None entry in sys.modules would trip libraries that look there)."""
    return (
        "import sys, importlib.machinery as machinery\n"
        "class Missing(machinery.PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {packages!r}:\n"
        "            return None\n"
        "        return super().find_spec(name, path, target)\n"
        "sys.meta_path[:] = [Missing if finder is machinery.PathFinder else finder for finder in sys.meta_path]\n"
    )


def test_default_without_torchcodec_fails_early_with_install_advice(aggregated_sample, tmp_path):
    folder, _ = aggregated_sample
    result = run_python(
        without("torchcodec") + "import pop_rok\n"
        f"pop_rok.PopRok(config_name='default', data_dir={str(folder)!r}, cache_dir={str(tmp_path)!r})\n"
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "pip install torch==2.13.0 torchcodec==0.13.0" in result.stderr
    assert "apt-get install ffmpeg" in result.stderr
    assert "'labels' config needs neither" in result.stderr
    assert not any(tmp_path.iterdir()), "nothing may be cached before the check"


def test_cli_build_reports_missing_torchcodec(aggregated_sample, tmp_path):
    folder, _ = aggregated_sample
    result = run_python(
        without("torchcodec") + "from poprok import cli\n"
        f"sys.exit(cli.main(['build', '--data-dir', {str(folder)!r}, '--cache-dir', {str(tmp_path)!r}]))\n"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: POP-ROK's 'default' config") and "Traceback" not in result.stderr


def test_labels_builds_without_torch(aggregated_sample, tmp_path):
    folder, manifest = aggregated_sample
    result = run_python(
        without("torch", "torchcodec") + "import pop_rok\n"
        f"ds = pop_rok.load_pop_rok(split='all', config='labels', data_dir={str(folder)!r}, "
        f"cache_dir={str(tmp_path)!r})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchcodec'))\n"
        "print(ds.num_rows, loaded)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == f"{len(manifest)} []"
