@echo off
rem Set up venv\ with the CPU-only build of torch: works everywhere, but slowly.
rem Then installs the pinned requirements and checks that torch works. Safe to run again.
rem Settings such as TORCH_VERSION are environment variables; see scripts\setup-common.bat.
setlocal
cd /d "%~dp0"
call scripts\setup-common.bat cpu
set "RC=%ERRORLEVEL%"
if not defined NO_PAUSE pause
exit /b %RC%
