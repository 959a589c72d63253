@echo off
rem Turn audio or video files into voice clips in the form the app reads best:
rem 22050 Hz, mono, 16-bit PCM WAV.
rem
rem   convert\to_voice_wav.bat SOURCE [VOICE_NAME]    write into voices\VOICE_NAME\
rem   convert\to_voice_wav.bat -o OUT_DIR SOURCE      write into OUT_DIR
rem
rem SOURCE is one file, any format ffmpeg reads, or a folder whose audio and video files are all
rem converted, not its subfolders. VOICE_NAME defaults to the folder's or the file's name.
rem Uses bin\ffmpeg.exe when present, else ffmpeg from PATH. You can also drag a file onto this script.
setlocal EnableExtensions
for %%I in ("%~dp0..") do set "ROOT=%%~fI"
set "SAMPLE_RATE=22050"
set "MEDIA_EXTENSIONS=.wav .mp3 .flac .ogg .oga .opus .m4a .aac .wma .aif .aiff .webm .mp4 .m4v .mkv .mov .avi"

set "OUT_DIR="
if /i "%~1"=="-o" (
    set "OUT_DIR=%~f2"
    shift
    shift
)
if "%~1"=="" goto :usage
set "SOURCE=%~f1"
if "%SOURCE:~-1%"=="\" set "SOURCE=%SOURCE:~0,-1%"
set "VOICE=%~2"
if not exist "%SOURCE%" (
    echo ERROR: "%SOURCE%" does not exist. 1>&2
    goto :failed
)

set "FFMPEG="
if exist "%ROOT%\bin\ffmpeg.exe" set "FFMPEG=%ROOT%\bin\ffmpeg.exe"
if not defined FFMPEG for /f "delims=" %%P in ('where ffmpeg 2^>nul') do if not defined FFMPEG set "FFMPEG=%%P"
if not defined FFMPEG goto :no_ffmpeg

if defined OUT_DIR if not "%VOICE%"=="" (
    echo ERROR: give either -o OUT_DIR or a VOICE_NAME, not both. 1>&2
    goto :failed
)
if defined OUT_DIR goto :have_out_dir
if not "%VOICE%"=="" goto :have_voice
if exist "%SOURCE%\" (
    for %%I in ("%SOURCE%") do set "VOICE=%%~nxI"
) else (
    for %%I in ("%SOURCE%") do set "VOICE=%%~nI"
)
:have_voice
if "%VOICE%"=="" (
    echo ERROR: no usable voice name; pass one as the second argument. 1>&2
    goto :failed
)
set "OUT_DIR=%ROOT%\voices\%VOICE%"
:have_out_dir
if not exist "%OUT_DIR%\" (
    mkdir "%OUT_DIR%"
    if errorlevel 1 goto :failed
)

set "FAILED=0"
set "COUNT=0"
echo Converting to %SAMPLE_RATE% Hz mono 16-bit WAV in "%OUT_DIR%" with "%FFMPEG%"
if exist "%SOURCE%\" (
    for %%F in ("%SOURCE%\*") do call :convert_if_media "%%~fF"
) else (
    call :convert_one "%SOURCE%"
)
if %COUNT%==0 (
    echo ERROR: no audio or video files in "%SOURCE%". 1>&2
    goto :failed
)
if not %FAILED%==0 (
    echo ERROR: %FAILED% of %COUNT% files could not be converted. 1>&2
    goto :failed
)
echo Done.
if not defined NO_PAUSE pause
exit /b 0

:convert_if_media
for %%E in (%MEDIA_EXTENSIONS%) do if /i "%~x1"=="%%E" goto :convert_one
echo   skipping "%~nx1", not an audio or video file
exit /b 0

:convert_one
rem Write a temp file, then move it into place, so an interrupted run never leaves a half-written
rem clip behind, and the source may be the destination itself.
set /a COUNT+=1
set "DST=%OUT_DIR%\%~n1.wav"
set "TMP_DST=%OUT_DIR%\.%~n1.converting.tmp"
"%FFMPEG%" -hide_banner -loglevel error -nostdin -y -i "%~1" -vn -map_metadata -1 -ac 1 -ar %SAMPLE_RATE% -c:a pcm_s16le -fflags +bitexact -flags:a +bitexact -f wav "%TMP_DST%"
if errorlevel 1 (
    echo   FAILED: "%~nx1", see ffmpeg's message above 1>&2
    set /a FAILED+=1
    if exist "%TMP_DST%" del /q "%TMP_DST%"
    exit /b 0
)
move /y "%TMP_DST%" "%DST%" >nul
echo   "%~nx1" to "%DST%"
exit /b 0

:no_ffmpeg
echo ERROR: ffmpeg was not found. Fix it in one of two ways: 1>&2
echo   1. install ffmpeg system-wide, for example: winget install --id Gyan.FFmpeg, then open a new window; or 1>&2
echo   2. put ffmpeg.exe into "%ROOT%\bin\", where it is used before any system-wide one. 1>&2
goto :failed

:usage
echo Usage: convert\to_voice_wav.bat [-o OUT_DIR] SOURCE [VOICE_NAME]
echo SOURCE is an audio or video file, or a folder of them.
goto :failed

:failed
if not defined NO_PAUSE pause
exit /b 1
