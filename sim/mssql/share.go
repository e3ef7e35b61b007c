package mssql

import (
	"path/filepath"
	"strings"
)

// The backup share (Config.Share) is the directory the instance's service
// account reaches backups through. Fault injection can make it unreadable
// (SetShareReadable(false), or EXEC master.dbo.sp_chatdr_fault
// @action = N'share_unreadable'): every BACKUP, RESTORE and log-shipping
// copy that touches a path under it then fails with operating system
// error 5 (3201 + 3013), as SQL Server does when the account loses access.

// SetShareReadable makes the share readable again (true) or unreadable.
func (in *Instance) SetShareReadable(ok bool) { in.shareDenied.Store(!ok) }

// underShare reports whether path is the share or inside it.
func (in *Instance) underShare(path string) bool {
	if in.cfg.Share == "" {
		return false
	}
	share, err := filepath.Abs(in.cfg.Share)
	if err != nil {
		return false
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	if strings.EqualFold(p, share) {
		return true
	}
	rel, err := filepath.Rel(share, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// shareCheck returns 3201 (operating system error 5) for a path under an
// unreadable share.
func (in *Instance) shareCheck(path string) error {
	if in.shareDenied.Load() && in.underShare(path) {
		return sqlErr(3201, path, 5, "Access is denied.")
	}
	return nil
}
