"""A stand-in for `cosign verify --key <key> <image>` (no cosign on the sandbox): exits 0 when the image, pinned by
digest, is listed in the --signatures file (one reference per line), else 1 with cosign's message on stderr.
It refuses references by tag, as a signature check must verify the exact content."""

import argparse
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--signatures", required=True)
    parser.add_argument("image")
    args = parser.parse_args()
    if "@sha256:" not in args.image:
        sys.stderr.write("Error: %s is not pinned by digest\n" % args.image)
        return 2
    with open(args.signatures) as handle:
        signed = {line.strip() for line in handle if line.strip()}
    if args.image in signed:
        sys.stdout.write('[{"critical": {"image": {"docker-manifest-digest": "%s"}}}]\n' % args.image.split("@")[1])
        return 0
    sys.stderr.write("Error: no matching signatures: %s\n" % args.image)
    return 1


if __name__ == "__main__":
    sys.exit(main())
