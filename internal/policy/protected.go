// Package policy decides what a session may have: which mounts are allowed (and why others
// are refused), which secrets pass the secrets door, the network, capabilities and limits.
// Its Decision has a canonical JSON form whose SHA-256 is the policy hash.
package policy

import (
	"path/filepath"
	"strings"
)

// Protected is one protected path. Paths starting with ~/ are relative to the home directory;
// $RUNTIME is the rootless runtime directory Podman uses.
type Protected struct {
	Path string
	What string   // what it holds, for messages
	OS   []string // empty means every OS
	// Exact protects the path itself but not what is below it: / and the home directory,
	// whose subdirectories (a repository under ~/dev) are what sessions are for.
	Exact bool
	// Always: never mountable, not even when the profile marks the mount allowProtected and
	// the command line repeats it — sourceosctl's own state (its signing key, evidence,
	// profiles, image manifest): a session that could reach it could forge its own record.
	Always bool
	// Bulky marks a large tree whose files are not secrets (container storage): the
	// hard-link check does not walk it.
	Bulky bool
	// Source says where the path comes from: the tool's own documentation.
	Source string
}

// The OSes an entry can be limited to.
var (
	linux   = []string{"linux"}
	darwin  = []string{"darwin"}
	windows = []string{"windows"}
)

// ProtectedPaths is the one list of paths that are never mounted unless a profile marks the
// mount allowProtected and the command line repeats it with --allow-protected. Any parent of
// one of them (such as ~/.config or /var) is refused too, and so is the home directory itself.
// Entries without an OS apply to every OS (Windows tools keep these under %USERPROFILE% too).
// The list is of the places tools document for their credentials: a secret kept elsewhere is
// protected only by not being allowlisted.
var ProtectedPaths = []Protected{
	{Path: "/", What: "the root file system", Exact: true, Source: "filesystem root"},
	{Path: "~", What: "the home directory", Exact: true, Source: "the home directory holds every per-user secret below"},

	// Keys and key agents.
	{Path: "~/.ssh", What: "SSH keys", Source: "https://man.openbsd.org/ssh#FILES"},
	{Path: "~/.gnupg", What: "GnuPG keys", Source: "https://www.gnupg.org/documentation/manuals/gnupg/GPG-Configuration.html"},
	{Path: "~/.pki", What: "NSS certificate and key database", OS: linux, Source: "https://firefox-source-docs.mozilla.org/security/nss/legacy/reference/nss_tools__certutil/index.html"},

	// Cloud CLIs.
	{Path: "~/.aws", What: "AWS credentials", Source: "https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-files.html"},
	{Path: "~/.azure", What: "Azure credentials", Source: "https://learn.microsoft.com/cli/azure/azure-cli-configuration"},
	{Path: "~/.config/gcloud", What: "Google Cloud credentials", OS: []string{"linux", "darwin"}, Source: "https://cloud.google.com/sdk/docs/configurations"},
	{Path: "~/AppData/Roaming/gcloud", What: "Google Cloud credentials", OS: windows, Source: "https://cloud.google.com/sdk/docs/configurations"},
	{Path: "~/.oci", What: "Oracle Cloud credentials", Source: "https://docs.oracle.com/en-us/iaas/Content/API/Concepts/sdkconfig.htm"},
	{Path: "~/.bluemix", What: "IBM Cloud credentials", Source: "https://cloud.ibm.com/docs/cli?topic=cli-ibmcloud_env_var"},
	{Path: "~/.aliyun", What: "Alibaba Cloud credentials", Source: "https://www.alibabacloud.com/help/en/cli/configure-credentials"},
	{Path: "~/.config/doctl", What: "DigitalOcean token", OS: linux, Source: "https://docs.digitalocean.com/reference/doctl/how-to/install/"},
	{Path: "~/Library/Application Support/doctl", What: "DigitalOcean token", OS: darwin, Source: "https://docs.digitalocean.com/reference/doctl/how-to/install/"},
	{Path: "~/AppData/Roaming/doctl", What: "DigitalOcean token", OS: windows, Source: "https://docs.digitalocean.com/reference/doctl/how-to/install/"},
	{Path: "~/.config/linode-cli", What: "Linode token", Source: "https://techdocs.akamai.com/cloud-computing/docs/install-and-configure-the-cli"},
	{Path: "~/.config/hcloud", What: "Hetzner Cloud token", Source: "https://github.com/hetznercloud/cli/blob/main/docs/tutorials/setup-hcloud-cli.md"},
	{Path: "~/.config/scw", What: "Scaleway credentials", Source: "https://cli.scaleway.com/config/"},
	{Path: "~/.config/openstack", What: "OpenStack clouds.yaml", Source: "https://docs.openstack.org/python-openstackclient/latest/configuration/index.html"},
	{Path: "~/.terraform.d", What: "Terraform credentials", Source: "https://developer.hashicorp.com/terraform/cli/config/config-file#credentials"},
	{Path: "~/.terraformrc", What: "Terraform CLI configuration and credentials", Source: "https://developer.hashicorp.com/terraform/cli/config/config-file"},
	{Path: "~/AppData/Roaming/terraform.rc", What: "Terraform CLI configuration and credentials", OS: windows, Source: "https://developer.hashicorp.com/terraform/cli/config/config-file"},
	{Path: "~/.pulumi", What: "Pulumi credentials", Source: "https://www.pulumi.com/docs/iac/cli/environment-variables/"},
	{Path: "~/.fly", What: "Fly.io token", Source: "https://fly.io/docs/flyctl/configuration/"},
	{Path: "~/.config/netlify", What: "Netlify token", Source: "https://docs.netlify.com/cli/get-started/"},
	{Path: "~/.local/share/com.vercel.cli", What: "Vercel token", OS: linux, Source: "https://vercel.com/docs/cli/global-options#global-config"},
	{Path: "~/Library/Application Support/com.vercel.cli", What: "Vercel token", OS: darwin, Source: "https://vercel.com/docs/cli/global-options#global-config"},
	{Path: "~/AppData/Roaming/com.vercel.cli", What: "Vercel token", OS: windows, Source: "https://vercel.com/docs/cli/global-options#global-config"},
	{Path: "~/.wrangler", What: "Cloudflare Wrangler token", Source: "https://developers.cloudflare.com/workers/wrangler/configuration/"},
	{Path: "~/.config/.wrangler", What: "Cloudflare Wrangler token", Source: "https://developers.cloudflare.com/workers/wrangler/configuration/"},
	{Path: "~/.config/configstore", What: "Firebase and other Node CLIs' tokens", Source: "https://firebase.google.com/docs/cli"},
	{Path: "~/.supabase", What: "Supabase access token", Source: "https://supabase.com/docs/reference/cli/supabase-login"},
	{Path: "~/.databrickscfg", What: "Databricks tokens", Source: "https://docs.databricks.com/en/dev-tools/auth/config-profiles.html"},
	{Path: "~/.snowflake", What: "Snowflake connections", Source: "https://docs.snowflake.com/en/developer-guide/snowflake-cli/connecting/configure-cli"},

	// Kubernetes.
	{Path: "~/.kube", What: "Kubernetes credentials", Source: "https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/"},
	{Path: "~/.minikube", What: "minikube client keys", Source: "https://minikube.sigs.k8s.io/docs/handbook/config/"},
	{Path: "~/.talos", What: "Talos client credentials", Source: "https://www.talos.dev/latest/reference/cli/"},
	{Path: "~/.config/helm", What: "Helm registry and repository credentials", OS: linux, Source: "https://helm.sh/docs/faq/#xdg-base-directory-support"},
	{Path: "~/Library/Preferences/helm", What: "Helm registry and repository credentials", OS: darwin, Source: "https://helm.sh/docs/faq/#xdg-base-directory-support"},
	{Path: "~/AppData/Roaming/helm", What: "Helm registry and repository credentials", OS: windows, Source: "https://helm.sh/docs/faq/#xdg-base-directory-support"},

	// Container engines and registries.
	{Path: "~/.docker", What: "Docker credentials and socket", Source: "https://docs.docker.com/reference/cli/docker/login/"},
	{Path: "~/.config/containers", What: "Podman configuration and registry auth", Source: "https://github.com/containers/image/blob/main/docs/containers-auth.json.5.md"},
	{Path: "$RUNTIME/containers", What: "Podman's registry auth file (auth.json)", OS: linux, Source: "https://github.com/containers/image/blob/main/docs/containers-auth.json.5.md"},
	{Path: "~/.local/share/containers", What: "Podman storage", Bulky: true, Source: "https://github.com/containers/storage/blob/main/docs/containers-storage.conf.5.md"},
	{Path: "/var/run/docker.sock", What: "the Docker socket", Source: "https://docs.docker.com/engine/security/#docker-daemon-attack-surface"},
	{Path: "/run/docker.sock", What: "the Docker socket", Source: "https://docs.docker.com/engine/security/#docker-daemon-attack-surface"},
	{Path: "/run/podman/podman.sock", What: "the rootful Podman socket", Source: "https://docs.podman.io/en/latest/markdown/podman-system-service.1.html"},
	{Path: "$RUNTIME/podman/podman.sock", What: "the rootless Podman socket", Source: "https://docs.podman.io/en/latest/markdown/podman-system-service.1.html"},
	{Path: "$RUNTIME/docker.sock", What: "the rootless Docker socket", Source: "https://docs.docker.com/engine/security/rootless/"},

	// Package managers.
	{Path: "~/.npmrc", What: "npm registry tokens", Source: "https://docs.npmjs.com/cli/configuring-npm/npmrc"},
	{Path: "~/.yarnrc.yml", What: "Yarn registry tokens", Source: "https://yarnpkg.com/configuration/yarnrc#npmAuthToken"},
	{Path: "~/.yarnrc", What: "Yarn 1 registry tokens", Source: "https://classic.yarnpkg.com/en/docs/yarnrc"},
	{Path: "~/.pypirc", What: "PyPI upload credentials", Source: "https://packaging.python.org/en/latest/specifications/pypirc/"},
	{Path: "~/.config/pip", What: "pip configuration (index credentials)", OS: linux, Source: "https://pip.pypa.io/en/stable/topics/configuration/"},
	{Path: "~/.pip", What: "pip configuration (index credentials)", Source: "https://pip.pypa.io/en/stable/topics/configuration/"},
	{Path: "~/Library/Application Support/pip", What: "pip configuration (index credentials)", OS: darwin, Source: "https://pip.pypa.io/en/stable/topics/configuration/"},
	{Path: "~/AppData/Roaming/pip", What: "pip configuration (index credentials)", OS: windows, Source: "https://pip.pypa.io/en/stable/topics/configuration/"},
	{Path: "~/.config/pypoetry", What: "Poetry repository credentials", OS: linux, Source: "https://python-poetry.org/docs/configuration/"},
	{Path: "~/Library/Application Support/pypoetry", What: "Poetry repository credentials", OS: darwin, Source: "https://python-poetry.org/docs/configuration/"},
	{Path: "~/AppData/Roaming/pypoetry", What: "Poetry repository credentials", OS: windows, Source: "https://python-poetry.org/docs/configuration/"},
	{Path: "~/.condarc", What: "conda channel credentials", Source: "https://docs.conda.io/projects/conda/en/latest/user-guide/configuration/use-condarc.html"},
	{Path: "~/.cargo/credentials.toml", What: "crates.io token", Source: "https://doc.rust-lang.org/cargo/reference/config.html#credentials"},
	{Path: "~/.cargo/credentials", What: "crates.io token", Source: "https://doc.rust-lang.org/cargo/reference/config.html#credentials"},
	{Path: "~/.gem/credentials", What: "RubyGems API key", Source: "https://guides.rubygems.org/command-reference/#gem-signin"},
	{Path: "~/.local/share/gem/credentials", What: "RubyGems API key", OS: linux, Source: "https://guides.rubygems.org/command-reference/#gem-signin"},
	{Path: "~/.bundle/config", What: "Bundler source credentials", Source: "https://bundler.io/man/bundle-config.1.html#CREDENTIALS-FOR-GEM-SOURCES"},
	{Path: "~/.m2/settings.xml", What: "Maven server credentials", Source: "https://maven.apache.org/settings.html#servers"},
	{Path: "~/.m2/settings-security.xml", What: "Maven master password", Source: "https://maven.apache.org/guides/mini/guide-encryption.html"},
	{Path: "~/.gradle/gradle.properties", What: "Gradle repository credentials", Source: "https://docs.gradle.org/current/userguide/build_environment.html#sec:gradle_configuration_properties"},
	{Path: "~/.nuget/NuGet", What: "NuGet source credentials", OS: []string{"linux", "darwin"}, Source: "https://learn.microsoft.com/nuget/consume-packages/configuring-nuget-behavior"},
	{Path: "~/AppData/Roaming/NuGet", What: "NuGet source credentials", OS: windows, Source: "https://learn.microsoft.com/nuget/consume-packages/configuring-nuget-behavior"},
	{Path: "~/.config/composer", What: "Composer auth.json", OS: linux, Source: "https://getcomposer.org/doc/articles/authentication-for-private-packages.md"},
	{Path: "~/.composer", What: "Composer auth.json", Source: "https://getcomposer.org/doc/articles/authentication-for-private-packages.md"},
	{Path: "~/AppData/Roaming/Composer", What: "Composer auth.json", OS: windows, Source: "https://getcomposer.org/doc/articles/authentication-for-private-packages.md"},
	{Path: "~/.pub-cache/credentials.json", What: "Dart pub token", Source: "https://dart.dev/tools/pub/cmd/pub-token"},
	{Path: "~/.config/dart", What: "Dart pub credentials", OS: linux, Source: "https://dart.dev/tools/pub/cmd/pub-token"},
	{Path: "~/.hex", What: "Hex API key", Source: "https://hex.pm/docs/publish"},

	// Password managers and secret stores.
	{Path: "~/.password-store", What: "pass password store", Source: "https://www.passwordstore.org/"},
	{Path: "~/.local/share/gopass", What: "gopass password stores", OS: linux, Source: "https://github.com/gopasspw/gopass/blob/master/docs/config.md"},
	{Path: "~/.config/gopass", What: "gopass configuration", OS: linux, Source: "https://github.com/gopasspw/gopass/blob/master/docs/config.md"},
	{Path: "~/.vault-token", What: "HashiCorp Vault token", Source: "https://developer.hashicorp.com/vault/docs/commands/token-helper"},
	{Path: "~/.config/op", What: "1Password CLI session", Source: "https://developer.1password.com/docs/cli/config-directories/"},
	{Path: "~/.op", What: "1Password CLI session", Source: "https://developer.1password.com/docs/cli/config-directories/"},
	{Path: "~/.1password", What: "1Password SSH agent socket", Source: "https://developer.1password.com/docs/ssh/agent/"},
	{Path: "~/.config/1Password", What: "1Password app data", OS: linux, Source: "https://support.1password.com/1password-linux/"},
	{Path: "~/Library/Group Containers/2BUA8C4S2C.com.1password", What: "1Password app data and SSH agent socket", OS: darwin, Source: "https://developer.1password.com/docs/ssh/agent/"},
	{Path: "~/.config/Bitwarden CLI", What: "Bitwarden CLI session", OS: linux, Source: "https://bitwarden.com/help/cli/#config"},
	{Path: "~/Library/Application Support/Bitwarden CLI", What: "Bitwarden CLI session", OS: darwin, Source: "https://bitwarden.com/help/cli/#config"},
	{Path: "~/AppData/Roaming/Bitwarden CLI", What: "Bitwarden CLI session", OS: windows, Source: "https://bitwarden.com/help/cli/#config"},
	{Path: "~/.lpass", What: "LastPass CLI session", Source: "https://github.com/lastpass/lastpass-cli/blob/master/lpass.1.txt"},
	{Path: "~/.local/share/lpass", What: "LastPass CLI session", OS: linux, Source: "https://github.com/lastpass/lastpass-cli/blob/master/lpass.1.txt"},
	{Path: "~/.config/lpass", What: "LastPass CLI session", OS: linux, Source: "https://github.com/lastpass/lastpass-cli/blob/master/lpass.1.txt"},
	{Path: "~/.local/share/keyrings", What: "GNOME keyrings", OS: linux, Source: "https://wiki.gnome.org/Projects/GnomeKeyring"},
	{Path: "~/.local/share/kwalletd", What: "KDE wallets", OS: linux, Source: "https://userbase.kde.org/KDE_Wallet_Manager"},
	{Path: "~/Library/Keychains", What: "macOS keychains", OS: darwin, Source: "https://support.apple.com/guide/keychain-access/welcome/mac"},
	{Path: "~/AppData/Roaming/Microsoft/Credentials", What: "Windows Credential Manager", OS: windows, Source: "https://learn.microsoft.com/windows/win32/secauthn/credential-manager"},
	{Path: "~/AppData/Local/Microsoft/Credentials", What: "Windows Credential Manager", OS: windows, Source: "https://learn.microsoft.com/windows/win32/secauthn/credential-manager"},
	{Path: "~/AppData/Roaming/Microsoft/Protect", What: "Windows DPAPI master keys", OS: windows, Source: "https://learn.microsoft.com/windows/win32/api/dpapi/"},

	// Git and Git hosting CLIs.
	{Path: "~/.git-credentials", What: "git credentials", Source: "https://git-scm.com/docs/git-credential-store#FILES"},
	{Path: "~/.config/git/credentials", What: "git credentials", Source: "https://git-scm.com/docs/git-credential-store#FILES"},
	{Path: "~/.gitconfig", What: "git configuration (tokens in URL rewrites and extra headers)", Source: "https://git-scm.com/docs/git-config#FILES"},
	{Path: "~/.config/git/config", What: "git configuration (tokens in URL rewrites and extra headers)", Source: "https://git-scm.com/docs/git-config#FILES"},
	{Path: "~/.netrc", What: "netrc credentials", Source: "https://everything.curl.dev/usingcurl/netrc"},
	{Path: "~/_netrc", What: "netrc credentials", OS: windows, Source: "https://everything.curl.dev/usingcurl/netrc"},
	{Path: "~/.config/gh", What: "GitHub CLI tokens", OS: []string{"linux", "darwin"}, Source: "https://cli.github.com/manual/gh_help_environment"},
	{Path: "~/AppData/Roaming/GitHub CLI", What: "GitHub CLI tokens", OS: windows, Source: "https://cli.github.com/manual/gh_help_environment"},
	{Path: "~/.config/glab-cli", What: "GitLab CLI tokens", Source: "https://gitlab.com/gitlab-org/cli/-/blob/main/docs/source/config/index.md"},
	{Path: "~/.config/hub", What: "hub GitHub token", Source: "https://hub.github.com/hub.1.html"},
	{Path: "~/.config/tea", What: "Gitea CLI tokens", Source: "https://gitea.com/gitea/tea"},

	// AI coding tools' own logins on the host (sessions get their own, in a volume).
	{Path: "~/.claude", What: "Claude Code login and settings", Source: "https://docs.anthropic.com/en/docs/claude-code/settings"},
	{Path: "~/.claude.json", What: "Claude Code account state", Source: "https://docs.anthropic.com/en/docs/claude-code/settings"},
	{Path: "~/.codex", What: "Codex CLI login (auth.json)", Source: "https://github.com/openai/codex/blob/main/docs/config.md"},
	{Path: "~/.gemini", What: "Gemini CLI login", Source: "https://github.com/google-gemini/gemini-cli/blob/main/docs/cli/authentication.md"},
	{Path: "~/.config/github-copilot", What: "GitHub Copilot tokens", Source: "https://github.com/github/copilot.vim"},

	// IDEs' secret stores.
	{Path: "~/.config/JetBrains", What: "JetBrains IDEs' password safe (c.kdbx)", OS: linux, Source: "https://www.jetbrains.com/help/idea/reference-ide-settings-password-safe.html"},
	{Path: "~/AppData/Roaming/JetBrains", What: "JetBrains IDEs' password safe (c.kdbx)", OS: windows, Source: "https://www.jetbrains.com/help/idea/reference-ide-settings-password-safe.html"},
	{Path: "~/Library/Application Support/JetBrains", What: "JetBrains IDEs' settings", OS: darwin, Source: "https://www.jetbrains.com/help/idea/reference-ide-settings-password-safe.html"},

	// Shell and REPL histories: where pasted tokens end up.
	{Path: "~/.bash_history", What: "bash history", Source: "https://www.gnu.org/software/bash/manual/bash.html#index-HISTFILE"},
	{Path: "~/.zsh_history", What: "zsh history", Source: "https://zsh.sourceforge.io/Doc/Release/Parameters.html#index-HISTFILE"},
	{Path: "~/.local/share/fish", What: "fish history", OS: []string{"linux", "darwin"}, Source: "https://fishshell.com/docs/current/interactive.html#searchable-command-history"},
	{Path: "~/.psql_history", What: "psql history", Source: "https://www.postgresql.org/docs/current/app-psql.html#APP-PSQL-FILES"},
	{Path: "~/.mysql_history", What: "mysql client history", Source: "https://dev.mysql.com/doc/refman/8.0/en/mysql-logging.html"},
	{Path: "~/.python_history", What: "Python REPL history", Source: "https://docs.python.org/3/library/site.html#rlcompleter-config"},
	{Path: "~/.node_repl_history", What: "Node.js REPL history", Source: "https://nodejs.org/api/repl.html#persistent-history"},
	{Path: "~/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine", What: "PowerShell history", OS: windows, Source: "https://learn.microsoft.com/powershell/module/psreadline/about/about_psreadline#command-history"},

	// Browser profiles: cookies and saved passwords.
	{Path: "~/.config/google-chrome", What: "Chrome profile", OS: linux, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/.config/chromium", What: "Chromium profile", OS: linux, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/.mozilla", What: "Firefox profile", OS: linux, Source: "https://support.mozilla.org/kb/profiles-where-firefox-stores-user-data"},
	{Path: "~/.config/microsoft-edge", What: "Edge profile", OS: linux, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/.config/BraveSoftware", What: "Brave profile", OS: linux, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/Library/Application Support/Google/Chrome", What: "Chrome profile", OS: darwin, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/Library/Application Support/Chromium", What: "Chromium profile", OS: darwin, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/Library/Application Support/Firefox", What: "Firefox profile", OS: darwin, Source: "https://support.mozilla.org/kb/profiles-where-firefox-stores-user-data"},
	{Path: "~/Library/Safari", What: "Safari profile", OS: darwin, Source: "https://support.apple.com/guide/safari/welcome/mac"},
	{Path: "~/Library/Cookies", What: "macOS cookie stores", OS: darwin, Source: "https://support.apple.com/guide/safari/welcome/mac"},
	{Path: "~/Library/Application Support/Microsoft Edge", What: "Edge profile", OS: darwin, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/Library/Application Support/BraveSoftware", What: "Brave profile", OS: darwin, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/AppData/Local/Google/Chrome/User Data", What: "Chrome profile", OS: windows, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/AppData/Local/Chromium/User Data", What: "Chromium profile", OS: windows, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/AppData/Roaming/Mozilla/Firefox", What: "Firefox profile", OS: windows, Source: "https://support.mozilla.org/kb/profiles-where-firefox-stores-user-data"},
	{Path: "~/AppData/Local/Microsoft/Edge/User Data", What: "Edge profile", OS: windows, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},
	{Path: "~/AppData/Local/BraveSoftware", What: "Brave profile", OS: windows, Source: "https://chromium.googlesource.com/chromium/src/+/HEAD/docs/user_data_dir.md"},

	// System directories.
	{Path: "/etc", What: "system configuration", Source: "https://refspecs.linuxfoundation.org/FHS_3.0/fhs/ch03s08.html"},
	{Path: "/var/run", What: "runtime state and sockets", Source: "https://refspecs.linuxfoundation.org/FHS_3.0/fhs/ch05s13.html"},
	{Path: "/run", What: "runtime state and sockets", Source: "https://refspecs.linuxfoundation.org/FHS_3.0/fhs/ch03s15.html"},
	{Path: "/proc", What: "process information", Source: "https://man7.org/linux/man-pages/man5/proc.5.html"},
	{Path: "/sys", What: "kernel interfaces", Source: "https://man7.org/linux/man-pages/man5/sysfs.5.html"},
	{Path: "/dev", What: "devices", Source: "https://refspecs.linuxfoundation.org/FHS_3.0/fhs/ch03s06.html"},
}

// protectedPath is a ProtectedPaths entry expanded for one host, in lexical and (when it
// exists) symlink-resolved form.
type protectedPath struct {
	Protected
	lexical  string
	resolved string
}

func (h Host) protected() []protectedPath {
	var out []protectedPath
	for _, p := range append(append([]Protected{}, ProtectedPaths...), h.Extra...) {
		if len(p.OS) > 0 && !contains(p.OS, h.OS) {
			continue
		}
		path := p.Path
		switch {
		case path == "~":
			path = h.Home
		case strings.HasPrefix(path, "~/"):
			path = filepath.Join(h.Home, filepath.FromSlash(path[2:]))
		case strings.HasPrefix(path, "$RUNTIME/"):
			if h.RuntimeDir == "" {
				continue // root, or no runtime directory: the rootful entries cover the host
			}
			path = filepath.Join(h.RuntimeDir, filepath.FromSlash(strings.TrimPrefix(path, "$RUNTIME/")))
		default:
			path = filepath.FromSlash(path)
		}
		path = filepath.Clean(path)
		out = append(out, protectedPath{Protected: p, lexical: path, resolved: h.resolveExisting(path)})
	}
	return out
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	if dir == string(filepath.Separator) {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
