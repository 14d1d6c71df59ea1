// Command runup is the RunUp backup tool; everything but wiring lives in
// internal/cli and the packages below it.
package main

import (
	"os"

	"github.com/runup/runup/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
