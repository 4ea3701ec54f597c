package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kecho-dev/kecho/test/matrix/internal/kmatrix"
)

// newBooter is the boot harness for the "boot" rows.
func newBooter(root string, log *slog.Logger) (kmatrix.Booter, error) {
	return noVM{}, nil
}

type noVM struct{}

func (noVM) Boot(ctx context.Context, s kmatrix.BootSpec) kmatrix.BootResult {
	return kmatrix.BootResult{Err: fmt.Errorf("the VM harness test/vm is not available yet")}
}
