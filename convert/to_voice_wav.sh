#!/usr/bin/env bash
# Turn audio or video files into voice clips in the form the app reads best:
# 22050 Hz, mono, 16-bit PCM WAV.
#
#   convert/to_voice_wav.sh SOURCE [VOICE_NAME]     write into voices/<VOICE_NAME>/
#   convert/to_voice_wav.sh -o OUT_DIR SOURCE       write into OUT_DIR
#
# SOURCE is one file (any format ffmpeg reads) or a folder, whose audio and video files are all
# converted (not its subfolders). VOICE_NAME defaults to the folder's name or the file's name.
# Uses bin/ffmpeg when present, else ffmpeg from PATH.
set -euo pipefail

SAMPLE_RATE=22050
MEDIA_EXTENSIONS=" wav mp3 flac ogg oga opus m4a aac wma aif aiff webm mp4 m4v mkv mov avi "

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Only shell builtins until ffmpeg is found, so a clear message comes even with a bare PATH.
script_dir="${0%/*}"
[ "$script_dir" = "$0" ] && script_dir=.
ROOT="$(cd "$script_dir/.." && pwd)"

find_ffmpeg() {
    if [ -x "$ROOT/bin/ffmpeg" ]; then
        printf '%s\n' "$ROOT/bin/ffmpeg"
    elif command -v ffmpeg >/dev/null 2>&1; then
        command -v ffmpeg
    else
        {
            echo "ERROR: ffmpeg was not found. Fix it in one of two ways:"
            echo "  1. install ffmpeg system-wide (Debian/Ubuntu: sudo apt install ffmpeg; macOS: brew install ffmpeg), or"
            echo "  2. put an ffmpeg binary into $ROOT/bin/ (it is used before any system-wide one)."
        } >&2
        return 1
    fi
}

is_media_file() {
    local ext="${1##*.}"
    [ "$ext" != "$1" ] || return 1
    ext="$(printf '%s' "$ext" | tr '[:upper:]' '[:lower:]')"
    case "$MEDIA_EXTENSIONS" in *" $ext "*) return 0 ;; *) return 1 ;; esac
}

# convert_one SRC DST: decode anything ffmpeg reads; write a temp file, then rename it into place,
# so an interrupted run never leaves a half-written clip (and SRC may equal DST).
convert_one() {
    local src=$1 dst=$2
    local tmp
    tmp="$(dirname "$dst")/.$(basename "$dst").$$.tmp"
    if "$FFMPEG" -hide_banner -loglevel error -nostdin -y -i "$src" \
        -vn -map_metadata -1 -ac 1 -ar "$SAMPLE_RATE" -c:a pcm_s16le \
        -fflags +bitexact -flags:a +bitexact -f wav "$tmp"; then
        mv -f "$tmp" "$dst"
        echo "  $(basename "$src") -> $dst"
    else
        rm -f "$tmp"
        echo "  FAILED: $src (ffmpeg's message is above)" >&2
        return 1
    fi
}

out_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        -o | --out)
            [ $# -ge 2 ] || die "$1 needs a folder"
            out_dir=$2
            shift 2
            ;;
        --) shift; break ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) break ;;
    esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage >&2; exit 2; fi
source_path=$1
[ -e "$source_path" ] || die "'$source_path' does not exist"

FFMPEG="$(find_ffmpeg)" || exit 1

if [ -z "$out_dir" ]; then
    voice="${2:-}"
    if [ -z "$voice" ]; then
        voice="$(basename "${source_path%/}")"
        [ -d "$source_path" ] || voice="${voice%.*}"
    fi
    case "$voice" in
        "" | . | .. | */*) die "'$voice' is not a usable voice name; pass one as the second argument" ;;
    esac
    out_dir="$ROOT/voices/$voice"
elif [ $# -eq 2 ]; then
    die "give either -o OUT_DIR or a VOICE_NAME, not both"
fi
mkdir -p "$out_dir"

sources=()
if [ -d "$source_path" ]; then
    while IFS= read -r -d '' f; do
        case "$(basename "$f")" in .*) continue ;; esac
        if is_media_file "$f"; then
            sources+=("$f")
        else
            echo "  skipping $(basename "$f") (not an audio or video file)"
        fi
    done < <(find "$source_path" -mindepth 1 -maxdepth 1 -type f -print0 | sort -z)
    [ ${#sources[@]} -gt 0 ] || die "no audio or video files in '$source_path'"
else
    sources=("$source_path")
fi

echo "Converting ${#sources[@]} file(s) to ${SAMPLE_RATE} Hz mono 16-bit WAV in $out_dir (ffmpeg: $FFMPEG)"
failed=0
written=$'\n'
for src in "${sources[@]}"; do
    name="$(basename "$src")"
    dst="$out_dir/${name%.*}.wav"
    case "$written" in
        *$'\n'"$dst"$'\n'*) echo "  WARNING: $name also becomes $(basename "$dst"); it replaces the one written before" >&2 ;;
    esac
    if convert_one "$src" "$dst"; then
        written="$written$dst"$'\n'
    else
        failed=$((failed + 1))
    fi
done

if [ "$failed" -gt 0 ]; then
    die "$failed of ${#sources[@]} file(s) could not be converted"
fi
echo "Done."
