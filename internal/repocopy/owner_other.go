//go:build !unix

package repocopy

import (
	"errors"
	"io/fs"
)

type owner struct{ uid, gid int }

func ownerOf(string) (owner, error) { return owner{}, nil }

func ownerFromInfo(_ fs.FileInfo, fallback owner) owner { return fallback }

func lchown(string, owner) error { return nil }

// mkWhiteout: copies need a local Linux service (overlay); elsewhere sessions are direct.
func mkWhiteout(string) error { return errors.New("copies need Linux") }
