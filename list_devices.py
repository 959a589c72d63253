"""Print every valid device string for --device / Settings > Device Override, with its name."""

from tortoise.device import list_devices


def main() -> None:
    for name, description in list_devices():
        print(f"{name:12s} {description}")


if __name__ == "__main__":
    main()
