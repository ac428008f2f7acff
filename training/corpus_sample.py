"""The Corpus page's offline sample: 3,000 English sentences from the Debian package `fortunes` (BSD licence).

    sudo apt-get install fortunes && python3 -m training.corpus_sample    # -> data/corpus-sample.txt

Files about computers, science, education, literature, work and the like; sentences of 5-30 words, ASCII,
attributions cut, words a classroom would rather skip left out; shuffled with a fixed seed."""

from __future__ import annotations

import random
import re
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
FILES = ("computers", "education", "food", "goedel", "humorists", "kids", "literature", "science", "wisdom",
         "work", "pets", "sports", "platitudes", "fortunes")  # fmt: skip
SKIP = re.compile(r"sex|drunk|kill|breast|virgin|hell\b|damn|slash|irish|whore|bitch|fuck|shit|naked", re.I)
SEED, SIZE = 1234, 3000
OUT = Path(__file__).resolve().parent.parent / "data" / "corpus-sample.txt"


def sentences() -> list[str]:
    seen, out = set(), []
    for name in FILES:
        text = (FORTUNES / f"{name}.u8").read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            if entry.lstrip().startswith(("--", "|", "+")):  # attributions and ASCII art
                continue
            flat = re.sub(r"\s+", " ", entry).strip()
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", flat):
                sentence = re.sub(r"\s*--\s*[A-Z].*$", "", sentence).strip()
                letters = sum(c.isalpha() for c in sentence)
                if (5 <= len(sentence.split()) <= 30 and sentence.isascii() and letters > 0.6 * len(sentence)
                        and not SKIP.search(sentence) and sentence not in seen):  # fmt: skip
                    seen.add(sentence)
                    out.append(sentence)
    return out


if __name__ == "__main__":
    found = sentences()
    random.Random(SEED).shuffle(found)
    OUT.write_text("\n".join(found[:SIZE]) + "\n")
    print(f"{min(SIZE, len(found))} of {len(found)} sentences -> {OUT}")
