package agentmachine

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sourceos/sourceosctl/internal/container"
	"github.com/sourceos/sourceosctl/internal/egress"
	"github.com/sourceos/sourceosctl/internal/profile"
)

// EgressPlan is how the session reaches its egress gateway: the socket the gateway listens
// on (on this host), its directory mounted read-only into the container, and the forwarder
// inside that the tools' proxy variables name.
type EgressPlan struct {
	// Socket is the gateway's Unix socket on the host; its directory is the mount's source.
	Socket string `json:"socket"`
	// SocketUID owns the socket (mode 0600): the uid the container's user has on the host
	// (-1: the invoking user, whom a rootless service maps to the container's user).
	SocketUID int `json:"socketUid"`
	// Proxy is the proxy URL the tools are given: the forwarder on the container's loopback.
	Proxy string `json:"proxy"`
	// Sidecar is the gateway's own container, where the service is not on this host (a
	// Podman machine, a remote service); Socket is then a path inside the containers.
	Sidecar *SidecarPlan `json:"sidecar,omitempty"`
	// Intercept: secrets are injected, so the gateway has a session CA whose certificate the
	// container trusts (a file beside the socket, and a bundle the helper makes with the
	// image's roots).
	Intercept bool `json:"intercept,omitempty"`
}

// Where the container finds the session CA: its certificate beside the socket, and the bundle
// the helper writes at start (the image's roots and the CA) in the temporary directory.
var (
	caInside     = container.EgressTarget + "/" + egress.CAFile
	bundleInside = container.TmpDir + "/sourceos-egress-ca.pem"
)

// caVars name the session CA for the tools that read one: Node adds its file to the roots it
// has; OpenSSL, curl, Python requests and git read one bundle of every root.
var caVars = map[string]string{
	"NODE_EXTRA_CA_CERTS": caInside,
	"SSL_CERT_FILE":       bundleInside,
	"CURL_CA_BUNDLE":      bundleInside,
	"REQUESTS_CA_BUNDLE":  bundleInside,
	"GIT_SSL_CAINFO":      bundleInside,
}

// helperArgs are the helper's options for the session's egress: the forwarder to the gateway,
// and the CA bundle when secrets are injected.
func (e *EgressPlan) helperArgs() []string {
	if e == nil {
		return nil
	}
	args := []string{"--forward", egressForward}
	if e.Intercept {
		args = append(args, "--ca-bundle", caInside+"="+bundleInside)
	}
	return args
}

// proxyVars are the variables tools read their proxy from; curl and Python read the lower-case
// forms, Node, Go and Rust the upper-case ones; NO_PROXY keeps the container's own loopback
// direct (nothing else listens there).
var proxyVars = []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"}

const noProxy = "localhost,127.0.0.1,::1"

// checkAllowHosts reads --allow-host values as egress rules; they need the gateway mode.
func checkAllowHosts(p *profile.Profile, hosts []string) error {
	if len(hosts) == 0 {
		return nil
	}
	if mode := p.Spec.Network.Mode; mode != profile.NetworkGateway {
		return &InputError{Flag: "--allow-host", Err: fmt.Errorf("adds to the egress gateway's allowlist, and profile %s has network %s", p.Metadata.Name, mode),
			Fix: "set spec.network: gateway in the profile (the container then has no network but the gateway), or leave out --allow-host"}
	}
	for _, h := range hosts {
		if _, err := egress.ParseRule(h, "--allow-host"); err != nil {
			return &InputError{Flag: "--allow-host", Err: err, Fix: "write host, *.suffix, host:port, an address or a CIDR prefix, e.g. --allow-host registry.npmjs.org:443"}
		}
	}
	return nil
}

// EgressBase is where sessions put their gateway sockets: the runtime directory when there
// is one (tmpfs, removed at logout), else sourceosctl's state directory.
func EgressBase(runtimeDir, stateDir string) string {
	if runtimeDir != "" && filepath.IsAbs(runtimeDir) {
		return filepath.Join(runtimeDir, "sourceos", "egress")
	}
	return filepath.Join(stateDir, "egress")
}

// egressDir is the directory of the session's gateway socket, in EgressBase; its name is the
// session ID's random part, which keeps the socket path short.
func egressDir(f Facts, sessionID string) string {
	base := EgressBase(f.RuntimeDir, f.StateDir)
	name := sessionID
	if i := strings.LastIndexByte(sessionID, '-'); i >= 0 {
		name = sessionID[i+1:]
	}
	return filepath.Join(base, name)
}

// planEgress gives a gateway session its socket, the proxy variables and the way to the
// gateway: on a local Linux service, the gateway runs in sourceosctl and its socket's
// directory is mounted; on a machine or another host, it runs in a sidecar container there
// (planSidecar). Without the programs that needs, the session is refused rather than run open.
func planEgress(p *profile.Profile, f Facts, pl *Plan) error {
	if pl.Decision.Egress == nil {
		return nil
	}
	proxy := "http://" + container.EgressListen
	s := &pl.Container
	s.Network = profile.NetworkNone
	for _, k := range proxyVars {
		s.Env[k] = proxy
	}
	s.Env["NO_PROXY"], s.Env["no_proxy"] = noProxy, noProxy
	intercept := len(pl.Decision.Egress.Inject) > 0
	if intercept {
		for k, v := range caVars {
			s.Env[k] = v
		}
		var names []string
		for _, in := range pl.Decision.Egress.Inject {
			names = append(names, in.Name+" for "+strings.Join(in.Hosts, ", "))
		}
		pl.Notes = append(pl.Notes, "secrets injected by the gateway (the container holds placeholders; the values stay in the gateway's memory): "+strings.Join(names, "; ")+
			". Only these hosts are intercepted, with a CA made for this session whose key never enters the container; every other host is an end-to-end TLS tunnel")
	}
	if !f.Local || f.Workspace {
		if err := planSidecar(p, f, pl, proxy); err != nil {
			return err
		}
		pl.Egress.Intercept = intercept
		return nil
	}
	if f.Helper.Path == "" {
		return &MissingError{Component: "egress gateway", Detail: "this sourceosctl was built without its container helper, whose forwarder is the container's way to the gateway",
			Fix: "build it with make build, or set spec.network to none (no network) or bridge (unfiltered)"}
	}
	if f.StateDir == "" && f.RuntimeDir == "" {
		return &MissingError{Component: "egress gateway", Detail: "no runtime or state directory for its socket"}
	}
	dir := egressDir(f, pl.SessionID)
	sock := filepath.Join(dir, container.EgressSocket)
	uid := -1
	if !f.Rootless {
		uid, _ = userIDs(pl.Container.User)
	}
	pl.Egress = &EgressPlan{Socket: sock, SocketUID: uid, Proxy: proxy, Intercept: intercept}
	s.Mounts = append(s.Mounts, container.Mount{Source: dir, Target: container.EgressTarget, ReadOnly: true})
	pl.Notes = append(pl.Notes, fmt.Sprintf("egress: the container has no network; the tools' proxy %s is sourceos-helper's forwarder, relaying to this session's gateway on %s, which allows only the rules below, refuses private, loopback and metadata addresses unless a rule names them, and records every connection in the evidence", proxy, sock))
	return nil
}

// egressForward is the helper's --forward for a gateway session: the proxy address inside,
// relayed to the socket where the mount or the volume puts it (the same path either way).
const egressForward = container.EgressListen + "=" + container.EgressTarget + "/" + container.EgressSocket
