"""``python -m yuqing.demo_site [--host H] [--port P] [--every S] [--seed N]``."""

from __future__ import annotations

import argparse

from yuqing.demo_site import serve


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m yuqing.demo_site", description="舆情监测演示信息源")
    ap.add_argument("--host", default="127.0.0.1", help="监听地址（默认 127.0.0.1）")
    ap.add_argument("--port", type=int, default=8100, help="端口（默认 8100）")
    ap.add_argument("--every", type=float, default=20.0, help="每隔多少秒发布一条新内容（默认 20）")
    ap.add_argument("--seed", type=int, default=7, help="随机种子（默认 7）")
    a = ap.parse_args(argv)
    serve(a.host, a.port, a.every, a.seed)


if __name__ == "__main__":
    main()
