package podman

// LocalEnv exposes localEnv to the external tests.
var LocalEnv = localEnv
