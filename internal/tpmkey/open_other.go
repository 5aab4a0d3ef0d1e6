//go:build !linux

package tpmkey

import (
	"errors"

	"github.com/google/go-tpm/tpm2/transport"
)

// open: a TPM is used through Linux's /dev/tpmrm0 only; elsewhere the evidence key is a file.
func open(string) (transport.TPMCloser, error) {
	return nil, errors.New("a TPM-held evidence key is supported on Linux only")
}
