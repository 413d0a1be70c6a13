# Reads the two parts of NoCloud user-data this guest honours: root's authorized keys and the
# pinned ed25519 host key. The harness writes exactly this layout; cloud-init reads it too.
/^ssh_authorized_keys:/ { section = "authorized"; next }
/^ssh_keys:/ { section = "host"; next }
/^[^ ]/ { section = "" }
section == "authorized" && /^  - / {
  key = substr($0, 5); gsub(/^"|"$/, "", key)
  print key > "/root/.ssh/authorized_keys"; next
}
section == "host" && /^  ed25519_private: \|/ { private = 1; next }
section == "host" && private && /^    / { print substr($0, 5) > "/run/host-key.openssh"; next }
section == "host" { private = 0 }
