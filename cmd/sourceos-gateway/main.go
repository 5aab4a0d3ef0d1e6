//go:build linux

// Command sourceos-gateway is the session's egress gateway as a program of its own, for where
// it cannot run inside sourceosctl: next to the container on a Podman machine or a remote
// service (docs/design/egress-gateway.md). `sourceos-gateway SOCKET UID RULES LOG` serves on
// SOCKET (owned by UID, mode 0600) the policy RULES (the base64url JSON of egress.Rules) until
// SIGTERM or SIGINT, then writes every connection attempt to LOG, one JSON object per line,
// and a last line that accounts for them. It prints "ready SOCKET" once it accepts
// connections. When RULES inject secrets, it first reads their placeholders and values as one
// JSON line on standard input (never an argument or a file) and puts the session CA's
// certificate, ca.pem, beside SOCKET; the CA's key stays in its memory. Exit codes: 0 when
// every connection was accounted for, 1 when the gateway failed or could not account for one,
// 2 for bad arguments.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/sourceos/sourceosctl/internal/egress"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: sourceos-gateway SOCKET UID RULES LOG")
		os.Exit(2)
	}
	uid, err := strconv.Atoi(os.Args[2])
	var rules egress.Rules
	if err == nil {
		var raw []byte
		if raw, err = base64.RawURLEncoding.DecodeString(os.Args[3]); err == nil {
			err = json.Unmarshal(raw, &rules)
		}
	}
	if err == nil {
		_, err = rules.Policy()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-gateway: arguments:", err)
		os.Exit(2)
	}
	log, err := os.OpenFile(os.Args[4], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-gateway:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = egress.Sidecar{Socket: os.Args[1], UID: uid, Rules: rules, Ready: os.Stdout, Log: log, Values: os.Stdin}.Run(ctx)
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-gateway:", err)
		os.Exit(1)
	}
}
