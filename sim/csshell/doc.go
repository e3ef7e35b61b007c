// Package csshell simulates the Lync Server 2013 / Skype for Business Server
// 2015 Management Shell for chatdr's lab and tests: `chatdr-sim csshell`
// accepts the command lines the csshell plugin sends to powershell.exe
// (`-NoProfile -NonInteractive -Command SCRIPT`), parses SCRIPT with a small
// PowerShell-subset parser (ParseScript), and emulates the Persistent Chat
// cmdlets the failover and failback procedures use against a Central
// Management Store kept in a JSON file shared by the whole lab (Store).
//
// Each chat server has a local store that follows the central one after a
// per-server replication delay; Store.LocalState is what
// `Get-CsPersistentChatState -LocalStore` shows on that server, and what
// the chat-server simulator reads to decide which database to use and
// whether it is active. Install-CsMirrorDatabase, Uninstall-CsMirrorDatabase
// and Test-CsPersistentChatMessage talk to the SQL Server simulators through
// go-mssqldb.
//
// README.md lists the emulated cmdlets, the CMS file format, and what is
// UNVERIFIED against a real deployment.
package csshell
