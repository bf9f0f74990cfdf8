"""The folder writer shared by session 16's make*.py: each variant a copy of kernels/'s .cu
and .cuh files under DEST/<name>/ (for INC_KERNEL_DIR) with its own two_shot.cu."""
import os, shutil


def check(text, *strings):
    """Every string occurs exactly once in text (else kernels/ moved on: update them)."""
    for s in strings:
        assert text.count(s) == 1, "kernels/ moved on: update the strings: " + s


def write(src, dest, variants):
    for name, text in variants.items():
        d = os.path.join(dest, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for f in os.listdir(src):
            if f.endswith(".cu") or f.endswith(".cuh"):
                shutil.copy(os.path.join(src, f), d)
        open(os.path.join(d, "two_shot.cu"), "w").write(text)
    print("variants:", " ".join(variants))
