//go:build !unix

package policy

import (
	"context"
	"errors"
)

// linkCountsKnown is false off Unix: Windows reports no link count without opening each file.
const linkCountsKnown = false

func walkSameDevice(context.Context, string, func(string, fileID, uint64)) error { return nil }

func lstatID(string) (fileID, bool, error) {
	return fileID{}, false, errors.New("no file identities on this OS")
}
