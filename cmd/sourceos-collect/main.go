//go:build linux

// Command sourceos-collect brings a session's work back from its copy (see internal/collect):
// `sourceos-collect REQUEST`, REQUEST the base64url JSON of a collect.Request. It runs in a
// short-lived container with no network, after the in-container check (sourceos-helper), and
// reads the copy with go-git, executing nothing in it. It is a program of its own so that the
// helper every session starts with stays small (go-git's packages cost the helper ~5 ms of
// start-up, ~20 ms a session).
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"github.com/sourceos/sourceosctl/internal/collect"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sourceos-collect REQUEST")
		os.Exit(2)
	}
	raw, err := base64.RawURLEncoding.DecodeString(os.Args[1])
	var r collect.Request
	if err == nil {
		err = json.Unmarshal(raw, &r)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-collect: request:", err)
		os.Exit(2)
	}
	if _, err := collect.Run(r); err != nil {
		fmt.Fprintln(os.Stderr, "sourceos-collect:", err)
		os.Exit(1)
	}
}
