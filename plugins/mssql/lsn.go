package mssql

import (
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"
)

// LSN is a SQL Server log sequence number: numeric(25,0).
type LSN struct{ v *big.Int }

// parseLSN parses the decimal text SQL Server gives for an LSN. Empty means
// NULL (ok false).
func parseLSN(s string) (LSN, bool, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return LSN{}, false, nil
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.Sign() < 0 {
		return LSN{}, false, fmt.Errorf("%q is not an LSN", s)
	}
	return LSN{v}, true, nil
}

// Cmp compares two LSNs like big.Int.Cmp.
func (l LSN) Cmp(o LSN) int { return l.v.Cmp(o.v) }

// String is the decimal form.
func (l LSN) String() string {
	if l.v == nil {
		return ""
	}
	return l.v.String()
}

// backupHeader is what RESTORE HEADERONLY says of one backup set.
type backupHeader struct {
	File              string
	BackupType        int // 1 full, 2 log, 5 differential
	DatabaseName      string
	FirstLSN, LastLSN LSN
	DatabaseBackupLSN LSN
	RecoveryForkID    string
	FinishDate        time.Time
	IsCopyOnly        bool
}

// unapplied is a log backup left out of a restore, and why.
type unapplied struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// restorePlan is which log backups to apply, in order, from a restore
// point, following domain.md §5.3: skip what is already applied, apply the
// one that contains the redo point, stop at a gap or at another fork. It
// never guesses past a gap.
type restorePlan struct {
	Apply     []backupHeader
	Skipped   []backupHeader // already applied (LastLSN ≤ redo point)
	Unapplied []unapplied
	// Stop says why the plan ends before the last file ("" when every file
	// after the point is applied).
	Stop string
	// Reached is the redo point after the plan.
	Reached LSN
}

// planLogRestore plans the restore of log backups logs (any order) onto a
// database whose redo point is redo on fork fork.
func planLogRestore(redo LSN, fork string, logs []backupHeader) restorePlan {
	sorted := append([]backupHeader(nil), logs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if c := sorted[i].FirstLSN.Cmp(sorted[j].FirstLSN); c != 0 {
			return c < 0
		}
		return sorted[i].File < sorted[j].File
	})
	p := restorePlan{Reached: redo}
	for i, h := range sorted {
		switch {
		case h.LastLSN.Cmp(p.Reached) <= 0:
			p.Skipped = append(p.Skipped, h)
			continue
		case !strings.EqualFold(h.RecoveryForkID, fork):
			p.Stop = fmt.Sprintf("%s belongs to recovery fork %s, the database is on fork %s", h.File, h.RecoveryForkID, fork)
		case h.FirstLSN.Cmp(p.Reached) > 0:
			p.Stop = fmt.Sprintf("gap in the log chain: %s starts at LSN %s but the database needs LSN %s next (a log backup is missing)", h.File, h.FirstLSN, p.Reached)
		default:
			p.Apply = append(p.Apply, h)
			p.Reached = h.LastLSN
			continue
		}
		for _, rest := range sorted[i:] {
			if rest.LastLSN.Cmp(p.Reached) > 0 {
				p.Unapplied = append(p.Unapplied, unapplied{File: rest.File, Reason: p.Stop})
			}
		}
		break
	}
	return p
}
