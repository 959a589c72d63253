@echo off
rem Update this checkout: git pull, then reinstall requirements.txt around the installed torch build
rem (which stays as it is). Refuses to run while tracked files have local changes.
setlocal EnableExtensions
cd /d "%~dp0"

where git >nul 2>nul
if errorlevel 1 (
    echo ERROR: git was not found. Install Git for Windows, or download a newer zip of the app. 1>&2
    goto :failed
)
git rev-parse --is-inside-work-tree >nul 2>nul
if errorlevel 1 (
    echo ERROR: this folder is not a git checkout, maybe a zip download. Clone it with git to update. 1>&2
    goto :failed
)

set "DIRTY="
for /f "delims=" %%L in ('git status --porcelain --untracked-files^=no') do set "DIRTY=1"
if defined DIRTY (
    echo ERROR: not updating, because these tracked files have local changes: 1>&2
    git status --short --untracked-files=no
    echo A pull could conflict with them. Either keep them aside and bring them back after: 1>&2
    echo     git stash ^&^& update.bat ^&^& git stash pop 1>&2
    echo or throw them away, which cannot be undone: 1>&2
    echo     git checkout -- FILE 1>&2
    echo Your voices, results, training, models and config folders are not tracked and never block. 1>&2
    goto :failed
)

rem cmd reads a batch file as it runs, and git pull may rewrite this one: everything from the pull
rem on is a single block, which cmd reads whole before running it.
(
    echo ==^> git pull
    git pull --ff-only
    if errorlevel 1 (
        echo ERROR: git pull failed, see above. If your branch has its own commits, merge or rebase by hand. 1>&2
        if not defined NO_PAUSE pause
        exit /b 1
    )
    if not exist "venv\Scripts\python.exe" (
        echo ==^> Code updated. There is no venv folder yet: run setup-cuda.bat, setup-directml.bat or setup-cpu.bat.
        if not defined NO_PAUSE pause
        exit /b 0
    )
    call scripts\setup-common.bat requirements
    if errorlevel 1 (
        if not defined NO_PAUSE pause
        exit /b 1
    )
    echo ==^> Update finished. If the app now needs a newer torch, run your setup script again.
    if not defined NO_PAUSE pause
    exit /b 0
)

:failed
if not defined NO_PAUSE pause
exit /b 1
