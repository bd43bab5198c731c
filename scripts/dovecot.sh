# Sourced by the benchmark scripts: a private Dovecot on 127.0.0.1, run
# from a folder of its own (Maildir, mail_fsync = always, the benchmark
# population in a passwd-file with their {SSHA} hashes).
#
#   dovecot_install                 # apt-get install when dovecot is missing
#   dovecot_start DIR USERS_CSV IMAP_PORT [POP3_PORT] [LMTP_PORT]
#   dovecot_stop DIR
#
# USERS_CSV is scripts/bench-users.sh's output (user,password_hash,...).
# A port left empty (or 0) turns that protocol off. Mail goes to
# DIR/mail/<domain>/<user>, owned by the mail user; the log is
# DIR/dovecot.log. DIR's parents must be readable by the mail user.

dovecot_install() {
  if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/lmtp ] || [ ! -x /usr/lib/dovecot/pop3 ]; then
    echo "# installing Dovecot"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd >/dev/null
  fi
}

dovecot_start() {
  local dc=$1 csv=$2 imap=${3:-0} pop3=${4:-0} lmtp=${5:-0}
  local protocols=""
  [ "$imap" != 0 ] && protocols+=" imap"
  [ "$pop3" != 0 ] && protocols+=" pop3"
  [ "$lmtp" != 0 ] && protocols+=" lmtp"
  mkdir -p "$dc/run" "$dc/state" "$dc/mail"
  chown -R mail:mail "$dc/mail"
  chmod 755 "$dc"
  awk -F, 'NR > 1 { print $1 ":" $2 }' "$csv" >"$dc/passwd"
  cat >"$dc/dovecot.conf" <<CONF
base_dir = $dc/run
state_dir = $dc/state
log_path = $dc/dovecot.log
protocols =$protocols
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $(id -u mail)
mail_location = maildir:$dc/mail/%d/%n
mail_fsync = always
passdb {
  driver = passwd-file
  args = scheme=SSHA $dc/passwd
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$dc/mail/%d/%n
}
service imap-login {
  inet_listener imap {
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $pop3
  }
  inet_listener pop3s {
    port = 0
  }
}
CONF
  if [ "$lmtp" != 0 ]; then
    cat >>"$dc/dovecot.conf" <<CONF
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
CONF
  fi
  dovecot -c "$dc/dovecot.conf"
}

dovecot_stop() {
  [ -f "$1/run/master.pid" ] && kill "$(cat "$1/run/master.pid")" 2>/dev/null
  return 0
}
