// Package images holds the build files of the default workspace image: the Containerfiles of
// the base, the tool layer, the stack overlays and the browser IDE, and the runtime catalog
// (tool, IDE and stack pins). They are embedded so the binary can build the image without a checkout.
package images

import "embed"

// Files is the images/ tree: base/Containerfile, tools/Containerfile,
// stacks/Containerfile, ide/Containerfile and catalog.json.
//
//go:embed base/Containerfile tools/Containerfile stacks/Containerfile ide/Containerfile catalog.json
var Files embed.FS
