"""Deploy the app as a Hugging Face Space: the files a Space runs, uploaded as one commit (no git history travels).

    python tools/deploy_space.py --dry-run OUT                  # write the bundle to OUT and print its size
    python tools/deploy_space.py --space ORG/NAME               # build it in a temporary folder and upload it
    python tools/deploy_space.py --space ORG/NAME --models-org ORG
        # the checkpoints as model repos ORG/bdflow-NAME; the Space names them in BDFLOW_MODELS instead of holding them

The bundle: a short README.md with the Space's front matter (README.md's own), app.py, the bdflow package (with its
LPIPS weights), assets/, requirements.txt, checkpoints/ and a .gitattributes that puts every file over 10 MB
(and every .safetensors) in LFS. Not training/, tests/, docs/ or benchmarks/. Only files git tracks are taken
(no caches, no local runs); outside a git checkout, every file but caches. Uploading needs a token
(``huggingface-cli login`` or $HF_TOKEN).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ("app.py", "requirements.txt", "bdflow", "assets", "checkpoints")  # what a Space runs
LFS_ABOVE = 10 * 1024**2  # bytes: the Hub refuses larger files outside LFS
MAX_BUNDLE = 60 * 1024**2  # bytes: a Space that starts quickly
LFS_RULE = "filter=lfs diff=lfs merge=lfs -text"
MODEL_PREFIX = "bdflow-"  # --models-org: checkpoints/face-x16 -> ORG/bdflow-face-x16


class DeployError(Exception):
    """A refusal with a message for the user (exit code 1)."""


def tracked_files(root: Path, names=BUNDLE) -> list[Path]:
    """The files of ``names`` under ``root`` (relative): those git tracks in a checkout, else all but caches."""
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise DeployError(f"{root} has no {', '.join(missing)}: run this from a bdflow checkout")
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", *names], capture_output=True,
                             check=True, timeout=60).stdout.decode()
        files = [Path(p) for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        found = [p for n in names for p in ([root / n] if (root / n).is_file() else (root / n).rglob("*"))]
        files = [p.relative_to(root) for p in found if p.is_file() and "__pycache__" not in p.parts]
    return sorted(f for f in files if (root / f).is_file())  # a tracked file deleted in the worktree is left out


def space_readme(readme: str) -> str:
    """README.md's front matter (what configures the Space) and its first paragraph after the title."""
    lines = readme.splitlines()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        raise DeployError("README.md does not start with the Space's front matter (--- ... ---)")
    end = lines.index("---", 1)
    paragraphs = "\n".join(lines[end + 1 :]).split("\n\n")
    intro = next(p for p in paragraphs if p.strip() and not p.lstrip().startswith("#"))
    return "\n".join(lines[: end + 1]) + "\n\n# BDFlow\n\n" + intro.strip() + "\n"


def gitattributes(root: Path, files: list[Path]) -> str:
    """LFS rules: every .safetensors, and each other file over LFS_ABOVE by name."""
    big = [f.as_posix() for f in files if f.suffix != ".safetensors" and (root / f).stat().st_size > LFS_ABOVE]
    return "".join(f"{pattern} {LFS_RULE}\n" for pattern in ["*.safetensors", *big])


def build(out: Path, root: Path = ROOT, checkpoints: bool = True) -> int:
    """Write the bundle to ``out`` (new or empty); its size in bytes."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DeployError(f"{out} exists and is not an empty folder: name a new one")
    names = BUNDLE if checkpoints else tuple(n for n in BUNDLE if n != "checkpoints")
    files = tracked_files(root, names)
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, out / f)
    (out / "README.md").write_text(space_readme((root / "README.md").read_text()))
    (out / ".gitattributes").write_text(gitattributes(root, files))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if size > MAX_BUNDLE:
        raise DeployError(f"the bundle in {out} is {size / 1024**2:.1f} MB, over {MAX_BUNDLE // 1024**2} MB: "
                          "use --models-org to upload the checkpoints as model repos")
    return size


def upload(space: str, models_org: str | None, private: bool) -> str:
    """Build the bundle in a temporary folder and upload it as one commit; the checkpoints as model repos first
    when ``models_org`` is given (the Space then names them in BDFLOW_MODELS). The Space's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory() as tmp:
        size = build(Path(tmp) / "space", checkpoints=models_org is None)
        api.create_repo(space, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        if models_org:
            repos = []
            for folder in sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file()):
                repo = f"{models_org}/{MODEL_PREFIX}{folder.name}"
                api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
                api.upload_folder(repo_id=repo, folder_path=folder, repo_type="model",
                                  commit_message=f"bdflow checkpoint {folder.name}")
                repos.append(repo)
                print(f"uploaded {folder} -> https://huggingface.co/{repo}")
            api.add_space_variable(space, "BDFLOW_MODELS", ",".join(repos))
        api.upload_folder(repo_id=space, folder_path=Path(tmp) / "space", repo_type="space",
                          commit_message="bdflow app", delete_patterns=["*"])
    print(f"uploaded {size / 1024**2:.1f} MB -> https://huggingface.co/spaces/{space}")
    return f"https://huggingface.co/spaces/{space}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--dry-run", type=Path, metavar="OUT",
                        help="write the bundle to the new folder OUT, upload nothing")
    target.add_argument("--space", metavar="ORG/NAME", help="the Space to create or update")
    p.add_argument("--models-org", metavar="ORG", help="upload the checkpoints as model repos ORG/bdflow-NAME "
                   "and leave them out of the Space (it loads them through BDFLOW_MODELS)")
    p.add_argument("--private", action="store_true", help="create the repos private")
    args = p.parse_args(argv)
    if args.dry_run and (args.models_org or args.private):
        p.error("--models-org and --private apply to an upload (--space), not to --dry-run")
    if args.space and args.space.count("/") != 1:
        p.error(f"--space must be ORG/NAME, got {args.space!r}")
    try:
        if args.dry_run:
            size = build(args.dry_run)
            print(f"{args.dry_run}: {size / 1024**2:.1f} MB ({size:,} bytes), "
                  f"{sum(1 for f in args.dry_run.rglob('*') if f.is_file())} files")
        else:
            upload(args.space, args.models_org, args.private)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the Hub's: no token, offline, no access, network
        print(f"error: the upload failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
