"""A slot publisher process for the concurrency tests: `python _slot_publisher.py URL TAG N USERS K` publishes N
versions whose rows carry TAG-i in every clip URI (so a reader can tell versions apart)."""
import sys

from evaluation.slot.publish import publish


def slot_rows(tag: str, users: int, k: int) -> list[dict]:
    return [{"user_id": f"u{u}", "served": c == 0, "passed": True, "rank": c + 1, "source": "generated",
             "clip_uri": f"file:///slots/{tag}/u{u}/c{c}.mp4", "seed": 100 + c, "candidate": c,
             "scores": {"engagement": 0.5, "realism": 0.1, "alignment": 0.4}, "reasons": []}
            for u in range(users) for c in range(k)]


if __name__ == "__main__":
    url, tag, n, users, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    for i in range(n):
        publish(url, slot_rows(f"{tag}-{i}", users, k), {"checkpoint_sha256": tag})
