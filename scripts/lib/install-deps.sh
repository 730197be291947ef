# Installs what is missing, nothing else. Source it, then call:
#   install_apt_packages PREFIX PACKAGE...   (dpkg check, then one apt-get install)
#   install_pip_modules PREFIX MODULE...     (python3 import check, then pip install)
# PREFIX names the calling script in the messages.

install_apt_packages() {
    local prefix=$1; shift
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "$prefix: installing ${missing[*]}"
        local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
}

install_pip_modules() {
    local prefix=$1; shift
    local m
    for m in "$@"; do
        python3 -c "import $m" 2>/dev/null || { echo "$prefix: pip install $m"; python3 -m pip install -q "$m"; }
    done
}
