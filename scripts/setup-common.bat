@echo off
rem Shared steps of setup-cuda.bat, setup-directml.bat, setup-cpu.bat and update.bat; the Linux twin
rem is scripts/setup-common.sh. Called from the repository root, never run on its own:
rem   call scripts\setup-common.bat MODE    MODE is cuda, directml or cpu: venv, torch, requirements, check
rem   call scripts\setup-common.bat requirements    only reinstall requirements.txt around the installed torch
rem Optional environment variables: PYTHON, TORCH_VERSION, TORCH_CUDA, TORCH_INDEX_URL, TORCH_DIRECTML_VERSION
setlocal EnableExtensions
cd /d "%~dp0.."

if not defined TORCH_VERSION set "TORCH_VERSION=2.13.0"
if not defined TORCH_CUDA set "TORCH_CUDA=cu130"
if not defined TORCH_INDEX_URL set "TORCH_INDEX_URL=https://download.pytorch.org/whl/%TORCH_CUDA%"
rem torch-directml pins its own, older torch release, so TORCH_VERSION does not apply to it.
if not defined TORCH_DIRECTML_VERSION set "TORCH_DIRECTML_VERSION=0.2.5.dev240914"
set "VENV_PY=venv\Scripts\python.exe"
set "CONSTRAINT_FILE=venv\torch-constraint.txt"
set "MODE=%~1"

if /i "%MODE%"=="requirements" goto :requirements_only
if /i "%MODE%"=="cuda" goto :full_setup
if /i "%MODE%"=="directml" goto :full_setup
if /i "%MODE%"=="cpu" goto :full_setup
echo ERROR: setup-common.bat needs one of: cuda, directml, cpu, requirements 1>&2
exit /b 2

:full_setup
call :ensure_venv
if errorlevel 1 exit /b 1
call :install_torch
if errorlevel 1 exit /b 1
call :install_requirements
if errorlevel 1 exit /b 1
> "venv\setup-backend.txt" echo %MODE%
echo ==^> Checking the torch build
"%VENV_PY%" scripts\torch_build.py verify --backend %MODE%
if errorlevel 1 (
    echo ERROR: torch is installed but broken; delete the venv folder and run the setup script again. 1>&2
    exit /b 1
)
echo ==^> Setup finished. Start the app with start.bat
exit /b 0

:requirements_only
if not exist "%VENV_PY%" (
    echo ERROR: no venv folder yet; run setup-cuda.bat, setup-directml.bat or setup-cpu.bat first. 1>&2
    exit /b 1
)
call :install_requirements
exit /b %ERRORLEVEL%

rem ---- subroutines ------------------------------------------------------------------------------

:ensure_venv
if exist "%VENV_PY%" (
    echo ==^> Reusing the existing venv folder
    exit /b 0
)
if not defined PYTHON call :find_python
if not defined PYTHON (
    echo ERROR: Python 3.11 was not found. Install it from python.org, ticking "Add python.exe to PATH", 1>&2
    echo or set PYTHON to its full path and run this again. 1>&2
    exit /b 1
)
echo ==^> Creating venv with %PYTHON%
%PYTHON% -m venv venv
if errorlevel 1 (
    echo ERROR: could not create the venv folder with %PYTHON%. 1>&2
    exit /b 1
)
exit /b 0

:find_python
py -3.11 -c "import sys" >nul 2>nul
if not errorlevel 1 (
    set "PYTHON=py -3.11"
    exit /b 0
)
python -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)" >nul 2>nul
if not errorlevel 1 set "PYTHON=python"
exit /b 0

:install_torch
rem Torch goes in first, so that nothing installed after it can choose a different build.
set "TORCH_PIP_ARGS="
if /i "%MODE%"=="cuda" (
    set "TORCH_SPEC=torch==%TORCH_VERSION%+%TORCH_CUDA%"
    set "TORCH_PIP_ARGS=--index-url %TORCH_INDEX_URL%"
)
if /i "%MODE%"=="directml" set "TORCH_SPEC=torch-directml==%TORCH_DIRECTML_VERSION%"
rem PyPI's Windows torch wheel is the CPU build already.
if /i "%MODE%"=="cpu" set "TORCH_SPEC=torch==%TORCH_VERSION%"
"%VENV_PY%" scripts\torch_build.py is-installed "%TORCH_SPEC%"
if not errorlevel 1 (
    echo ==^> %TORCH_SPEC% is already installed; skipping the torch download
    exit /b 0
)
echo ==^> Installing %TORCH_SPEC% %TORCH_PIP_ARGS%
"%VENV_PY%" -m pip install "%TORCH_SPEC%" %TORCH_PIP_ARGS%
if errorlevel 1 (
    echo ERROR: pip could not install %TORCH_SPEC%; see pip's message above. 1>&2
    if /i "%MODE%"=="cuda" echo If PyTorch publishes no %TORCH_CUDA% build of torch %TORCH_VERSION%, pick a current tag from https://pytorch.org/get-started/locally/ and run e.g.: set TORCH_CUDA=cu128 1>&2
    exit /b 1
)
exit /b 0

:install_requirements
rem A constraints file pins the installed torch build, so a package that depends on torch can
rem never make pip swap it for another build.
"%VENV_PY%" scripts\torch_build.py write-constraint "%CONSTRAINT_FILE%"
if errorlevel 1 exit /b 1
echo ==^> Installing requirements.txt; torch stays as pinned in %CONSTRAINT_FILE%
"%VENV_PY%" -m pip install -r requirements.txt -c "%CONSTRAINT_FILE%"
if errorlevel 1 (
    echo ERROR: pip could not install requirements.txt; see pip's message above. 1>&2
    exit /b 1
)
rem openai-whisper without its declared dependencies: they would pull in triton
"%VENV_PY%" -m pip install --no-deps -r requirements-nodeps.txt -c "%CONSTRAINT_FILE%"
if errorlevel 1 (
    echo ERROR: pip could not install requirements-nodeps.txt; see pip's message above. 1>&2
    exit /b 1
)
exit /b 0
