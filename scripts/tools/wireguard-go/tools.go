//go:build tools

// Package tools only records the main package scripts/tools.sh builds from this module.
package tools

import _ "golang.zx2c4.com/wireguard"
