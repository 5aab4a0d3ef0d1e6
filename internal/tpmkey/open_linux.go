//go:build linux

package tpmkey

import (
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// open opens a TPM character device, or a TPM emulator's Unix socket (swtpm's unixio server).
func open(device string) (transport.TPMCloser, error) {
	st, err := os.Stat(device)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Mode()&os.ModeSocket != 0:
		return linuxudstpm.Open(device)
	case st.Mode()&os.ModeCharDevice != 0:
		return linuxtpm.Open(device)
	}
	return nil, fmt.Errorf("%s is neither a TPM device nor a TPM emulator's socket", device)
}
