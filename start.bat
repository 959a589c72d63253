@echo off
rem Start the web UI: start.bat [app.py options], e.g. start.bat --listen 0.0.0.0:7860 --low-vram
rem Without a venv folder it runs setup-cuda.bat when nvidia-smi works; otherwise pick a setup script.
setlocal EnableExtensions
cd /d "%~dp0"

if exist "venv\Scripts\python.exe" goto :run
nvidia-smi -L >nul 2>nul
if errorlevel 1 goto :choose_setup
echo ==^> No venv folder yet and an NVIDIA GPU is present: running setup-cuda.bat first
call scripts\setup-common.bat cuda
if errorlevel 1 goto :failed
goto :run

:choose_setup
echo No venv folder yet. Run one of these first, then start.bat again:
echo   setup-cuda.bat       NVIDIA GPUs
echo   setup-directml.bat   AMD or Intel GPUs through DirectX 12
echo   setup-cpu.bat        no usable GPU: slow, but works everywhere
goto :failed

:run
if not exist "app.py" (
    echo ERROR: app.py is missing; is this a complete checkout? 1>&2
    goto :failed
)
rem A drop-in ffmpeg in bin\ wins over a system-wide one, for the app and everything it starts.
set "PATH=%~dp0bin;%PATH%"
set "PYTHONUTF8=1"
"venv\Scripts\python.exe" app.py %*
if errorlevel 1 goto :failed
exit /b 0

:failed
if not defined NO_PAUSE pause
exit /b 1
