"""Japanese and English for the portal. Keys are short names; each entry has both languages,
so a page can never show up in one language only (a test checks every key has both)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from campusvpn.core.calendar import format_from, format_local
from campusvpn.core.policy import Reason
from campusvpn.signin.engine import SPENT_RECOVERY_CODE

LANGUAGES = ("ja", "en")

# key: (English, Japanese). `{name}` placeholders are filled by `t`.
MESSAGES: dict[str, tuple[str, str]] = {
    "lang.other": ("日本語", "English"),
    "nav.home": ("Home", "ホーム"),
    "nav.vpn": ("VPN status", "VPN の状態"),
    "nav.security": ("Security info", "セキュリティ情報"),
    "nav.devices": ("Trusted devices", "信頼済みデバイス"),
    "nav.connect": ("Get connected", "接続方法"),
    "nav.admin": ("Admin console", "管理コンソール"),
    "nav.signout": ("Sign out", "サインアウト"),
    "signin.title": ("Sign in", "サインイン"),
    "signin.lead": (
        "Sign in with your user name (10 digits; @domain, spaces and full-width digits are fine) and password.",
        "ユーザー名（10 桁。@ドメイン付き・空白・全角数字でも可）とパスワードでサインインしてください。",
    ),
    "signin.username": ("User name", "ユーザー名"),
    "code.account": ("Signing in as {user}.", "{user} としてサインインしています。"),
    "signin.password": ("Password", "パスワード"),
    "signin.submit": ("Sign in", "サインイン"),
    "signin.passkey": ("Sign in with a passkey", "パスキーでサインイン"),
    "code.title": ("Verify it's you", "本人確認"),
    "code.totp": (
        "Enter the 6-digit code from your authenticator app, or a recovery code.",
        "認証アプリに表示される 6 桁のコード、またはリカバリーコードを入力してください。",
    ),
    "code.phone": (
        "Ask for a code to be sent to your phone, then enter it; or enter a recovery code.",
        "電話にコードを送信してから入力してください。リカバリーコードも使えます。",
    ),
    "code.label": ("Code", "コード"),
    "code.trust": ("Skip the code on this device for {days} days", "このデバイスでは {days} 日間コードを省略する"),
    "code.trust_warn": (
        "Do not tick this on a shared or public computer. You can revoke it any time under Trusted devices.",
        "共用・公共のコンピューターではチェックしないでください。「信頼済みデバイス」からいつでも取り消せます。",
    ),
    "code.send_sms": ("Text me a code: {label}", "SMS でコードを送信：{label}"),
    "code.send_voice": ("Call me with a code: {label}", "音声通話でコードを受け取る：{label}"),
    "code.submit": ("Verify", "確認"),
    "register.title": ("Register a verification method", "確認方法の登録"),
    "register.lead": (
        "You applied for MFA. Register a first verification method now: it is needed every time you sign in.",
        "MFA の利用を申請済みです。最初の確認方法を登録してください。サインインのたびに必要になります。",
    ),
    "register.needs_recovery": (
        "You removed every verification method. Enter a recovery code (or the one-time pass from the help desk) "
        "to register a new one.",
        "確認方法をすべて削除しています。新しい方法を登録するには、リカバリーコード（またはヘルプデスク発行の"
        "ワンタイムパス）を入力してください。",
    ),
    "register.recovery_label": ("Recovery code or one-time pass", "リカバリーコードまたはワンタイムパス"),
    "register.totp": ("Authenticator app (recommended)", "認証アプリ（推奨）"),
    "register.phone": ("Phone (text message or voice call)", "電話（SMS または音声通話）"),
    "totp.title": ("Set up your authenticator app", "認証アプリの設定"),
    "totp.step1": (
        "Open your authenticator app (any app that supports TOTP, e.g. Microsoft Authenticator, Google "
        "Authenticator) and scan this QR code.",
        "認証アプリ（Microsoft Authenticator、Google Authenticator など TOTP 対応のもの）を開き、"
        "この QR コードを読み取ってください。",
    ),
    "totp.manual": ("Can't scan? Enter this key by hand:", "読み取れない場合は、このキーを手入力してください："),
    "totp.same_phone": (
        "Setting up on this phone? Open the authenticator app with this link",
        "このスマートフォンで設定する場合は、このリンクで認証アプリを開いてください",
    ),
    "totp.qr_alt": ("QR code for the authenticator app", "認証アプリ用の QR コード"),
    "totp.step2": ("Then enter the 6-digit code the app shows.", "アプリに表示された 6 桁のコードを入力してください。"),
    "totp.submit": ("Confirm", "確認"),
    "phone.title": ("Add a phone", "電話の追加"),
    "phone.kind": ("Phone type", "電話の種類"),
    "phone.kind.mobile": ("Mobile (text or voice)", "携帯電話（SMS・音声）"),
    "phone.kind.alternate": ("Alternate phone (voice only)", "代替電話（音声のみ）"),
    "phone.kind.office": ("Office phone (voice only)", "勤務先電話（音声のみ）"),
    "phone.number": ("Phone number", "電話番号"),
    "phone.extension": ("Extension (office phone)", "内線番号（勤務先電話）"),
    "phone.channel": ("How should we send the code?", "コードの受け取り方法"),
    "phone.channel.sms": ("Text message (SMS)", "SMS"),
    "phone.channel.voice": ("Voice call", "音声通話"),
    "phone.send": ("Send a code", "コードを送信"),
    "phone.sent": (
        "We sent a code to {label}. Enter it below.",
        "{label} にコードを送信しました。下に入力してください。",
    ),
    "phone.confirm": ("Confirm", "確認"),
    "codes.title": ("Your recovery codes", "リカバリーコード"),
    "codes.lead": (
        "Each code works once, in place of a verification code. Keep them somewhere safe (printed, or in a "
        "password manager). They are shown only now.",
        "各コードは 1 回だけ、確認コードの代わりに使えます。安全な場所（印刷、パスワードマネージャーなど）に"
        "保管してください。表示されるのは今回だけです。",
    ),
    "codes.left": ("{left} of {total} recovery codes left.", "リカバリーコード残り {left} / {total} 個。"),
    "codes.regenerate": ("Make a new set (the old codes stop working)", "新しいセットを作成（古いコードは無効）"),
    "codes.copy_all": ("Copy all codes", "すべてのコードをコピー"),
    "codes.done": ("I have saved them", "保存しました"),
    "apply.title": ("Apply for multi-factor authentication (MFA)", "多要素認証（MFA）の利用申請"),
    "apply.lead": (
        "The VPN requires MFA. After you apply, you will register a verification method (an authenticator app "
        "or a phone) the next time you sign in. MFA cannot be switched off again.",
        "VPN の利用には MFA が必要です。申請後、次回のサインイン時に確認方法（認証アプリまたは電話）を登録します。"
        "MFA は申請後に無効にはできません。",
    ),
    "apply.when": (
        "If you apply now, you can use the VPN from {at} ({minutes} minutes after applying).",
        "今申請すると、{at}（申請の {minutes} 分後）から VPN を利用できます。",
    ),
    "apply.submit": ("Apply for MFA", "MFA を申請する"),
    "apply.done": (
        "You applied for MFA. Sign in again to register your first verification method. VPN use from {at}.",
        "MFA を申請しました。もう一度サインインして最初の確認方法を登録してください。VPN は {at} から利用できます。",
    ),
    "home.title": ("Welcome, {name}", "{name} さん、ようこそ"),
    "home.not_applied": (
        "You have not applied for MFA yet; the VPN needs it.",
        "まだ MFA を申請していません。VPN の利用には MFA が必要です。",
    ),
    "vpn.title": ("VPN status", "VPN の状態"),
    "vpn.allowed": ("You may use the VPN now.", "現在 VPN を利用できます。"),
    "vpn.refused": ("You cannot use the VPN now, because:", "現在 VPN を利用できません。理由："),
    "vpn.until": ("Changes at {at}.", "{at} に変わります。"),
    "vpn.notices": ("Please note:", "お知らせ："),
    "vpn.sessions": ("Your VPN sessions", "接続中の VPN セッション"),
    "vpn.no_sessions": ("No live VPN sessions.", "接続中のセッションはありません。"),
    "vpn.disconnect": ("Disconnect", "切断"),
    "vpn.disconnected": ("The session was disconnected.", "セッションを切断しました。"),
    "col.address": ("Address", "アドレス"),
    "col.from": ("From", "接続元"),
    "col.client": ("Client", "クライアント"),
    "col.protocol": ("Protocol", "プロトコル"),
    "proto.anyconnect": ("AnyConnect", "AnyConnect"),
    "proto.fortinet": ("FortiGate SSL-VPN", "FortiGate SSL-VPN"),
    "col.started": ("Started", "開始"),
    "col.method": ("Method", "方法"),
    "col.added": ("Added", "追加日"),
    "col.last_used": ("Last used", "最終使用"),
    "col.device": ("Device", "デバイス"),
    "col.expires": ("Expires", "有効期限"),
    "col.user": ("User", "ユーザー"),
    "col.status": ("Status", "状態"),
    "col.name": ("Name", "氏名"),
    "col.when": ("When", "日時"),
    "col.event": ("Event", "イベント"),
    "col.actor": ("By", "実行者"),
    "col.note": ("Note", "備考"),
    "security.title": ("Security info", "セキュリティ情報"),
    "security.lead": (
        "These are the ways you prove it's you. Changes need a fresh code and are announced by e-mail.",
        "本人確認に使う方法です。変更には新しいコードでの確認が必要で、変更はメールで通知されます。",
    ),
    "security.default": ("Default", "既定"),
    "security.make_default": ("Make default", "既定にする"),
    "security.delete": ("Delete", "削除"),
    "security.delete_last": (
        "This is your last method: after deleting it you must register again, with a recovery code.",
        "最後の確認方法です。削除すると、リカバリーコードを使って再登録が必要になります。",
    ),
    "security.add_totp": ("Add an authenticator app", "認証アプリを追加"),
    "security.add_phone": ("Add a phone", "電話を追加"),
    "security.add_passkey": ("Add a passkey", "パスキーを追加"),
    "security.passkeys": ("Passkeys (portal sign-in)", "パスキー（ポータルのサインイン用）"),
    "security.changed": ("Your security info was changed.", "セキュリティ情報を変更しました。"),
    "stepup.title": ("Confirm it's you", "本人確認"),
    "stepup.lead": (
        "Changes to your security info need a code from the last {minutes} minutes.",
        "セキュリティ情報の変更には、直近 {minutes} 分以内のコードによる確認が必要です。",
    ),
    "devices.title": ("Trusted devices", "信頼済みデバイス"),
    "devices.lead": (
        "On these devices you chose to skip the verification code. Revoke any you do not recognise.",
        "以下のデバイスでは確認コードを省略しています。心当たりのないものは取り消してください。",
    ),
    "devices.none": ("No trusted devices.", "信頼済みデバイスはありません。"),
    "devices.revoke": ("Revoke", "取り消す"),
    "devices.revoked": (
        "The device was revoked; it will be asked for a code again.",
        "デバイスを取り消しました。次回からコードが必要です。",
    ),
    "connect.title": ("Get connected", "接続方法"),
    "connect.server": ("Server address", "サーバーアドレス"),
    "connect.pin": ("Server certificate pin", "サーバー証明書のピン"),
    "connect.profile": (
        "Download the AnyConnect / Cisco Secure Client profile",
        "AnyConnect / Cisco Secure Client プロファイルをダウンロード",
    ),
    "connect.openconnect": ("openconnect (Linux)", "openconnect（Linux）"),
    "connect.windows": (
        "Windows and macOS: install Cisco Secure Client from the software site, import the profile, then connect "
        "to the server address and sign in with your user name, password and code.",
        "Windows・macOS：ソフトウェアサイトから Cisco Secure Client をインストールし、プロファイルを取り込んで"
        "サーバーアドレスに接続し、ユーザー名・パスワード・コードでサインインします。",
    ),
    "connect.mobile": (
        "iOS and Android: install Cisco Secure Client from the app store and add a connection to the server address.",
        "iOS・Android：アプリストアから Cisco Secure Client をインストールし、サーバーアドレスへの接続を追加します。",
    ),
    "connect.linux": (
        "Linux: install openconnect (for example with “sudo apt install openconnect”) and run the command below.",
        "Linux：openconnect をインストール（例：「sudo apt install openconnect」）し、下のコマンドを実行します。",
    ),
    "connect.forticlient": ("FortiClient (FortiGate SSL-VPN)", "FortiClient（FortiGate SSL-VPN）"),
    "connect.fc_install": (
        "Install FortiClient VPN and add a new connection of the type “SSL-VPN”.",
        "FortiClient VPN をインストールし、種類「SSL-VPN」の新しい接続を追加します。",
    ),
    "connect.fc_gateway": (
        "Remote Gateway: {host}. Port: {port} (tick “Customize port” if it is not 443).",
        "リモートゲートウェイ（Remote Gateway）：{host}。ポート：{port}（443 以外のときは「ポートの編集」"
        "（Customize port）にチェック）。",
    ),
    "connect.fc_realm": (
        "Realm (the connection group), where FortiClient asks for one: {realm}.",
        "レルム（接続グループ）を入力する欄がある場合：{realm}。",
    ),
    "connect.fc_signin": (
        "Connect with your user name and password. When asked for a token code, enter the 6-digit code from "
        "your authenticator app, a recovery code, or “sms” or “call” to have a code sent to your phone.",
        "ユーザー名とパスワードで接続します。トークンコードを求められたら、認証アプリの 6 桁のコード、"
        "リカバリーコード、または電話にコードを送る「sms」か「call」を入力します。",
    ),
    "connect.fc_certificate": (
        "If FortiClient warns that the server certificate is not trusted, continue only when the certificate's "
        "SHA-256 fingerprint is {fingerprint}. If it differs, do not connect: contact {helpdesk}.",
        "サーバー証明書が信頼されていないと FortiClient が警告した場合は、証明書の SHA-256 フィンガープリントが"
        " {fingerprint} と一致するときだけ続行してください。異なる場合は接続せず、{helpdesk} に連絡してください。",
    ),
    "connect.fortinet_openconnect": (
        "openconnect with the FortiGate protocol (Linux)",
        "FortiGate プロトコルの openconnect（Linux）",
    ),
    "connect.fortinet_linux": (
        "The same server also speaks the FortiGate SSL-VPN protocol; openconnect 9 or later connects with:",
        "同じサーバーは FortiGate SSL-VPN プロトコルにも対応しています。openconnect 9 以降では次のコマンドで接続します：",
    ),
    "err.csrf": (
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
        "このフォームは期限切れか、このサイトからのものではありません。戻ってページを再読み込みし、やり直してください。",
    ),
    "err.signin_required": ("Please sign in first.", "先にサインインしてください。"),
    "err.not_admin": ("This page is for administrators.", "このページは管理者専用です。"),
    "err.not_found": ("There is no such page.", "そのページはありません。"),
    "err.server": (
        "Something went wrong on our side. Nothing was changed. Try again, or contact {helpdesk}.",
        "サーバー側で問題が発生しました。変更は行われていません。もう一度試すか、{helpdesk} に連絡してください。",
    ),
    "err.unavailable": (
        "The service is temporarily unavailable; try again in a few minutes.",
        "サービスは一時的に利用できません。数分後にもう一度お試しください。",
    ),
    "err.too_big": ("The upload is too large (at most {size}).", "アップロードが大きすぎます（上限 {size}）。"),
    "err.session_expired": (
        "Your sign-in expired. Please sign in again.",
        "サインインの有効期限が切れました。再度サインインしてください。",
    ),
    "signout.done": ("You signed out.", "サインアウトしました。"),
    "signout.emptied": (
        "You deleted your last verification method, so you were signed out. Sign in again to register a new one.",
        "最後の認証方法を削除したため、サインアウトしました。もう一度サインインして、新しい認証方法を登録してください。",
    ),
    "admin.title": ("Admin console", "管理コンソール"),
    "admin.search": ("Find a user (user name or name)", "ユーザー検索（ユーザー名・氏名）"),
    "admin.search_submit": ("Search", "検索"),
    "admin.no_match": ("No user matches.", "該当するユーザーはいません。"),
    "admin.affiliations": ("Affiliations", "所属期間"),
    "admin.mfa": ("MFA", "MFA"),
    "admin.training": ("Training", "研修"),
    "admin.eligibility": ("VPN eligibility", "VPN 利用可否"),
    "admin.sessions": ("Sessions", "セッション"),
    "admin.audit": ("Audit trail", "監査ログ"),
    "admin.actions": ("Actions", "操作"),
    "admin.reason": ("Reason (kept in the audit trail)", "理由（監査ログに記録されます）"),
    "admin.suspend": ("Suspend", "一時停止"),
    "admin.restore": ("Restore", "復元"),
    "admin.revoke": ("Revoke", "失効"),
    "admin.reset_mfa": ("Reset MFA", "MFA をリセット"),
    "admin.kill": ("End session", "セッションを終了"),
    "admin.kill_all": ("End all sessions", "全セッションを終了"),
    "admin.pass": ("Issue a one-time recovery pass", "ワンタイムリカバリーパスを発行"),
    "admin.pass_shown": (
        "One-time pass for {user}: valid until {until}, once. Give it only after checking their identity.",
        "{user} のワンタイムパスです。{until} まで 1 回だけ有効です。本人確認の後にのみ渡してください。",
    ),
    "admin.done": ("Done: {what}.", "完了：{what}"),
    "admin.import": ("Bulk import", "一括取り込み"),
    "admin.roster": (
        "Roster CSV (username,name,role,email,from,until)",
        "名簿 CSV（username,name,role,email,from,until）",
    ),
    "admin.training_csv": ("Training completions CSV (username,completed_on)", "研修修了 CSV（username,completed_on）"),
    "admin.upload": ("Upload", "アップロード"),
    "admin.report": (
        "{ok} rows applied, {bad} rows refused.",
        "{ok} 行を反映、{bad} 行を拒否しました。",
    ),
    "admin.tokens": ("API tokens", "API トークン"),
    "admin.token_label": ("What the token is for", "トークンの用途"),
    "admin.token_create": ("Create a token", "トークンを作成"),
    "admin.token_shown": (
        "New token, shown only now. Scripts send it in the header “Authorization: Bearer <token>”.",
        "新しいトークンです（表示は今回のみ）。スクリプトはヘッダー「Authorization: Bearer <トークン>」として送信します。",
    ),
    "admin.token_revoke": ("Revoke", "取り消す"),
    "pass.title": ("One-time pass from the help desk", "ヘルプデスクのワンタイムパス"),
    "pass.lead": (
        "You have no way left to give a code. Bring your ID to the help desk; they give you a one-time pass. "
        "Enter it here to register a new verification method.",
        "コードを受け取る手段が残っていません。身分証を持ってヘルプデスクへ行き、ワンタイムパスを受け取ってください。"
        "ここに入力すると、新しい確認方法を登録できます。",
    ),
    "pass.label": ("One-time pass", "ワンタイムパス"),
    "pass.wrong": (
        "That pass is not right, expired, or was already used.",
        "パスが正しくないか、期限切れか、使用済みです。",
    ),
    "pass.link": (
        "Lost every way to get a code? Use a one-time pass from the help desk.",
        "コードを受け取る手段をすべて失った場合は、ヘルプデスクのワンタイムパスを使ってください。",
    ),
    "passkey.refused": (
        "That passkey was not accepted. Sign in with your password instead.",
        "このパスキーは受け付けられませんでした。パスワードでサインインしてください。",
    ),
    "passkey.none": (
        "No passkeys yet. A passkey lets you sign in to this portal with your device's PIN or fingerprint.",
        "パスキーは未登録です。パスキーを使うと、端末の PIN や指紋でこのポータルにサインインできます。",
    ),
    "nav.skip": ("Skip to the content", "本文へ移動"),
    "nav.label": ("Main menu", "メインメニュー"),
    "footer.helpdesk": ("Questions or trouble: {helpdesk}.", "お問い合わせ：{helpdesk}"),
    "footer.help": ("Help", "ヘルプ"),
    "footer.privacy": ("Privacy notice", "個人情報の取り扱い"),
    "common.copy": ("Copy", "コピー"),
    "common.copied": ("Copied", "コピーしました"),
    "vpn.waiting": ("Not yet: you can use the VPN soon.", "まだ利用できません（まもなく利用できます）。"),
    "vpn.go_connect": ("How to connect", "接続方法を見る"),
    "home.tile.vpn": (
        "Whether you may use the VPN now, and your live sessions.",
        "VPN を今使えるかどうかと、接続中のセッション。",
    ),
    "home.tile.security": (
        "Your verification methods, passkeys and recovery codes.",
        "確認方法・パスキー・リカバリーコードの管理。",
    ),
    "home.tile.devices": (
        "Devices where you skip the code; revoke them here.",
        "コードを省略しているデバイスの確認と取り消し。",
    ),
    "home.tile.connect": (
        "Server address, client software and settings.",
        "サーバーアドレス、クライアントソフトと設定。",
    ),
    "common.cancel": ("Cancel", "キャンセル"),
    "confirm.delete_method.title": ("Delete a verification method", "確認方法の削除"),
    "confirm.delete_method": ("Delete “{label}”?", "「{label}」を削除しますか？"),
    "confirm.delete_method.effect": (
        "You can no longer receive codes with it. This cannot be undone; you can add it again later.",
        "この方法ではコードを受け取れなくなります。元に戻せませんが、後で追加し直すことはできます。",
    ),
    "confirm.delete_passkey.title": ("Delete a passkey", "パスキーの削除"),
    "confirm.delete_passkey": ("Delete the passkey “{label}”?", "パスキー「{label}」を削除しますか？"),
    "confirm.delete_passkey.effect": (
        "You can no longer sign in to the portal with it; remove it from your device too.",
        "このパスキーではポータルにサインインできなくなります。端末側からも削除してください。",
    ),
    "confirm.codes.title": ("New recovery codes", "リカバリーコードの再作成"),
    "confirm.codes": ("Make a new set of recovery codes?", "リカバリーコードを新しく作成しますか？"),
    "confirm.codes.effect": (
        "Your {left} remaining codes stop working at once; only the new set will work.",
        "残っている {left} 個のコードはすぐに使えなくなり、新しいセットだけが有効になります。",
    ),
    "confirm.codes.yes": ("Make a new set", "新しいセットを作成"),
    "confirm.revoke_device.title": ("Revoke a trusted device", "信頼済みデバイスの取り消し"),
    "confirm.revoke_device": ("Revoke “{label}”?", "「{label}」を取り消しますか？"),
    "confirm.revoke_device.effect": (
        "That browser will be asked for a verification code at its next sign-in.",
        "そのブラウザーでは、次回のサインイン時に確認コードが必要になります。",
    ),
    "method.totp": ("Authenticator app", "認証アプリ"),
    "method.phone.mobile": ("Mobile phone", "携帯電話"),
    "method.phone.alternate": ("Alternate phone", "代替電話"),
    "method.phone.office": ("Office phone", "勤務先電話"),
    "status.active": ("Active", "有効"),
    "status.suspended": ("Suspended", "一時停止中"),
    "status.revoked": ("Revoked", "失効"),
    "mfa_state.not_applied": ("not applied", "未申請"),
    "mfa_state.registration_required": ("no method registered", "確認方法未登録"),
    "mfa_state.active": ("in use", "利用中"),
    "admin.vpn_yes": ("VPN: allowed", "VPN：利用可"),
    "admin.vpn_no": ("VPN: refused", "VPN：利用不可"),
    "col.email": ("E-mail", "メールアドレス"),
    "col.role": ("Role", "身分"),
    "col.created": ("Account created", "アカウント作成"),
    "admin.applied_at": ("applied {at}", "{at} に申請"),
    "admin.fiscal_year": ("FY{fy}", "{fy} 年度"),
    "admin.reason_hint": (
        "Each action needs its own reason: it is kept in the audit trail (and a suspension's is shown to the user).",
        "操作ごとに理由の入力が必要です。理由は監査ログに記録されます（一時停止の理由は本人にも表示されます）。",
    ),
    "admin.reason_required": ("Give a reason for “{what}”.", "「{what}」の理由を入力してください。"),
    "admin.about.reset_mfa": (
        "Removes every verification method and recovery code, signs the user out and ends their VPN sessions; "
        "they register again at the next sign-in.",
        "確認方法とリカバリーコードをすべて削除し、サインアウトさせ、VPN セッションを終了します。"
        "次回のサインインで再登録します。",
    ),
    "admin.about.pass": (
        "For someone with no method and no recovery code left, after checking their identity: a single-use pass.",
        "確認方法もリカバリーコードも残っていない人に、本人確認の後で渡す 1 回限りのパスです。",
    ),
    "admin.about.unlock": (
        "Lifts the wait after too many wrong passwords or codes for this account.",
        "パスワードやコードを何度も間違えたことによる、このアカウントの待ち時間を解除します。",
    ),
    "admin.about.suspended": (
        "Stops VPN and portal use until restored; live sessions end. The reason is shown to the user.",
        "復元するまで VPN とポータルを利用できなくします。接続中のセッションは終了します。理由は本人に表示されます。",
    ),
    "admin.about.revoked": (
        "Closes the account (for people who left); live sessions end.",
        "アカウントを閉鎖します（離籍した人向け）。接続中のセッションは終了します。",
    ),
    "admin.about.active": ("Makes the account usable again.", "アカウントを再び利用できるようにします。"),
    "admin.unlock": ("Unlock sign-in", "サインインのロックを解除"),
    "admin.unlocked": (
        "Sign-in unlocked ({n} counters cleared).",
        "サインインのロックを解除しました（カウンター {n} 件を消去）。",
    ),
    "confirm.admin": ("{what}: {user}?", "{user} に対して「{what}」を実行しますか？"),
    "confirm.admin.reset_mfa": (
        "Every verification method and recovery code of this account is removed, the user is signed out and "
        "their VPN sessions end.",
        "このアカウントの確認方法とリカバリーコードはすべて削除され、本人はサインアウトされ、VPN セッションは終了します。",
    ),
    "confirm.admin.suspended": (
        "The user can no longer use the VPN or the portal until the account is restored; live sessions end.",
        "アカウントを復元するまで、本人は VPN もポータルも利用できません。接続中のセッションは終了します。",
    ),
    "confirm.admin.revoked": (
        "The account is closed; live sessions end.",
        "アカウントは閉鎖され、接続中のセッションは終了します。",
    ),
    "confirm.admin.reason": ("Reason: {reason}", "理由：{reason}"),
    "admin.audit_all": ("The whole audit trail of {user}", "{user} の監査ログをすべて表示"),
    "admin.no_events": ("No events.", "イベントはありません。"),
    "admin.filter_event": ("Event (or its start, like “mfa.”)", "イベント（「mfa.」のような先頭部分でも可）"),
    "admin.filter_from": ("From (date)", "開始日"),
    "admin.filter_to": ("To (date)", "終了日"),
    "admin.filter": ("Filter", "絞り込む"),
    "admin.filter_clear": ("Clear the filters", "条件をクリア"),
    "admin.bad_date": ("Dates are like 2026-04-01.", "日付は 2026-04-01 の形式で入力してください。"),
    "admin.audit_count": ("Events: {total} · page {page} of {pages}", "{total} 件 · {page} / {pages} ページ"),
    "admin.pages": ("Pages", "ページ"),
    "admin.newer": ("← Newer", "← 新しいイベント"),
    "admin.older": ("Older →", "古いイベント →"),
    "admin.openapi": ("API description (OpenAPI)", "API の説明（OpenAPI）"),
    "outcome.ok": ("done", "完了"),
    "outcome.fail": ("failed", "失敗"),
    "outcome.refused": ("refused", "拒否"),
    "actor.system": ("the service", "システム"),
    "common.back": ("Back", "戻る"),
    "common.none": ("none", "なし"),
    "common.never": ("never", "未使用"),
    "common.yes": ("yes", "はい"),
    "common.no": ("no", "いいえ"),
}

REASONS: dict[str, tuple[str, str]] = {
    "account_revoked": (
        "",
        "アカウントは閉鎖されているため VPN を利用できません。大学の構成員である場合は {helpdesk} に連絡してください。",
    ),
    "account_suspended": (
        "",
        "アカウントが一時停止されているため VPN を利用できません（{reason}）。{helpdesk} に連絡してください。",
    ),
    "affiliation_not_started": ("", "大学での所属は {start} から始まります。その日から VPN を利用できます。"),
    "affiliation_ended": (
        "",
        "現在大学に所属していないため VPN を利用できません。誤りであれば {helpdesk} に連絡してください。",
    ),
    "affiliation_ending": (
        "",
        "所属は {end} に終了し、その翌日からアカウントと VPN は使えなくなります。大学のサービスに保存しているデータは"
        "それまでにバックアップしてください。",
    ),
    "mfa_not_applied": (
        "",
        "VPN に必要な多要素認証（MFA）を申請していません。{portal_url} で申請してください。申請の {minutes} 分後から利用できます。",
    ),
    "mfa_registration_required": (
        "",
        "確認方法が登録されていません。{portal_url} にサインインして、認証アプリまたは電話を登録してください。",
    ),
    "mfa_activation_pending": ("", "MFA の申請を有効化中です。{at}（あと {minutes} 分）から VPN を利用できます。"),
    "training_missing": (
        "",
        "今年度（{fy} 年度）の情報セキュリティ研修（期限 {deadline}）が未修了です。{training_url} で受講してください。"
        "修了が記録されると VPN を再び利用できます。",
    ),
    "training_due": (
        "",
        "今年度（{fy} 年度）の情報セキュリティ研修を {deadline} までに {training_url} で修了してください。期限の翌日から VPN を利用できなくなります。",
    ),
}

# Sentences the sign-in engine says, in Japanese (the engine speaks English to every front end).
ENGINE_JA: dict[str, str] = {
    "bad_credentials": "ユーザー名またはパスワードが正しくありません。",
    "account_revoked": "大学での所属が終了したなどの理由でアカウントは閉鎖されているため、サインインできません。",
    "That code is not right. Check it and try again.": "コードが正しくありません。確認してもう一度入力してください。",
    "That code was already used. Wait for the next code in your app.": "このコードは使用済みです。アプリの次のコードを待ってください。",
    SPENT_RECOVERY_CODE: "この回復コードは使用済みか、作り直す前の古いコードです（各コードは 1 回だけ使えます）。別の回復コード、またはアプリや電話のコードを入力してください。",
    "That recovery code is not right or was already used.": "リカバリーコードが正しくないか、使用済みです。",
}


# Audit events in words (the code stays in the page as data-event, and in the filter).
EVENTS: dict[str, tuple[str, str]] = {
    "account.created": ("Account created", "アカウント作成"),
    "account.purged": ("Account data deleted", "アカウント情報の削除"),
    "account.reset_after_gap": ("Account reset after a gap in affiliation", "所属の空白後にアカウントをリセット"),
    "account.unlocked": ("Sign-in unlocked", "サインインのロック解除"),
    "account.suspended": ("Account suspended", "アカウントの一時停止"),
    "account.revoked": ("Account revoked", "アカウントの失効"),
    "account.restored": ("Account restored", "アカウントの復元"),
    "password.set": ("Password set", "パスワードの設定"),
    "affiliation.added": ("Affiliation added", "所属期間の追加"),
    "affiliation.updated": ("Affiliation changed", "所属期間の変更"),
    "api.token.created": ("API token created", "API トークンの作成"),
    "api.token.revoked": ("API token revoked", "API トークンの取り消し"),
    "device.trusted": ("Device trusted", "デバイスを信頼済みに設定"),
    "device.used": ("Trusted device used", "信頼済みデバイスの使用"),
    "device.revoked": ("Trusted device revoked", "信頼済みデバイスの取り消し"),
    "device.revoked.user": ("Trusted device revoked by the user", "本人による信頼済みデバイスの取り消し"),
    "device.revoked_all": ("All trusted devices revoked", "すべての信頼済みデバイスの取り消し"),
    "mfa.applied": ("Applied for MFA", "MFA の申請"),
    "mfa.code_sent": ("Code sent to a phone", "電話へのコード送信"),
    "mfa.default_changed": ("Default method changed", "既定の確認方法の変更"),
    "mfa.method.added": ("Verification method added", "確認方法の追加"),
    "mfa.method.deleted": ("Verification method deleted", "確認方法の削除"),
    "mfa.recovery_code.used": ("Recovery code used", "リカバリーコードの使用"),
    "mfa.recovery_codes.generated": ("New recovery codes", "リカバリーコードの作成"),
    "mfa.recovery_pass.issued": ("One-time pass issued", "ワンタイムパスの発行"),
    "mfa.recovery_pass.used": ("One-time pass used", "ワンタイムパスの使用"),
    "mfa.reset": ("MFA reset", "MFA のリセット"),
    "mfa.totp.started": ("Authenticator set-up started", "認証アプリの設定開始"),
    "mfa.totp.confirm_failed": ("Authenticator set-up: wrong code", "認証アプリの設定：コード誤り"),
    "passkey.added": ("Passkey added", "パスキーの追加"),
    "passkey.deleted": ("Passkey deleted", "パスキーの削除"),
    "password.changed": ("Password changed", "パスワードの変更"),
    "signin.password": ("Sign-in: password", "サインイン：パスワード"),
    "signin.second_factor": ("Sign-in: code", "サインイン：コード"),
    "signin.passkey": ("Sign-in: passkey", "サインイン：パスキー"),
    "signin.decision": ("Sign-in: decision", "サインイン：判定"),
    "training.recorded": ("Training completion recorded", "研修修了の記録"),
    "vpn.session.opened": ("VPN session opened", "VPN セッション開始"),
    "vpn.session.ended": ("VPN session ended", "VPN セッション終了"),
}

# Sentences the service layer says (in English, for the CLI, the API and the log), in Japanese for
# the portal: a pattern for each message a portal page can show, with its facts as named groups.
SERVICE_JA: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), ja)
    for p, ja in (
        (r"\S+ has not applied for MFA; apply first.*", "MFA を申請していません。先に申請してください。"),
        (
            r"that code does not match; check the app shows the account (?P<account>.+) and that the phone's clock is right",
            "コードが一致しません。アプリに表示されているアカウントが {account} であること、スマートフォンの時刻が"
            "正しいことを確認してください。",
        ),
        (
            r"\S+ has no authenticator app waiting for confirmation.*",
            "設定中の認証アプリがありません。最初からやり直してください。",
        ),
        (
            r"\S+ already has an authenticator app;.*",
            "認証アプリは登録済みです。入れ替えるには、先に今の登録を削除してください。",
        ),
        (
            r"'(?P<n>.*)' is not (a|a valid) phone number; write it like (?P<ex>.*)",
            "「{n}」は電話番号として正しくありません。{ex} のように入力してください。",
        ),
        (
            r"'(?P<n>.*)' is not a mobile number; SMS codes need a mobile phone",
            "「{n}」は携帯電話の番号ではありません。SMS を受け取れるのは携帯電話だけです。",
        ),
        (r"only an office phone has an extension", "内線番号は勤務先電話にだけ入力できます。"),
        (r"extension '(?P<n>.*)' must be 1 to 10 digits", "内線番号「{n}」は 1〜10 桁の数字で入力してください。"),
        (r"phone kind .* is not known.*", "電話の種類を選んでください。"),
        (r"channel .* is not known.*", "コードの受け取り方法を選んでください。"),
        (
            r"a (?P<k>\w+) phone can only receive a voice call, not \w+",
            "この種類の電話では音声通話でのみコードを受け取れます。",
        ),
        (
            r"\S+ already has a (?P<k>\w+) phone; delete it first to change it",
            "この種類の電話は登録済みです。変更するには、先に今の登録を削除してください。",
        ),
        (
            r"that code is wrong or has expired; ask for a new one",
            "コードが正しくないか、有効期限が切れています。新しいコードを送信してください。",
        ),
        (
            r"no phone is waiting for confirmation; add it again",
            "確認待ちの電話がありません。もう一度追加してください。",
        ),
        (
            r"too many codes were sent in the last hour.*",
            "直近 1 時間に送信したコードが多すぎます。別の方法を使うか、しばらくしてからお試しください。",
        ),
        (r"there is no registered phone to send a code to", "コードを送信できる電話が登録されていません。"),
        (r"\S+ has no method \S+", "その確認方法は見つかりません（すでに削除されています）。"),
        (r"\S+ has no trusted device \S+", "その信頼済みデバイスは見つかりません（すでに取り消されています）。"),
        (r"there is no such passkey", "そのパスキーは見つかりません。"),
        (r"at most (?P<n>\d+) passkeys; delete one first", "パスキーは {n} 個までです。先に 1 つ削除してください。"),
        (r"the passkey could not be registered: .*", "パスキーを登録できませんでした。もう一度お試しください。"),
        (
            r"confirm with a second factor first: .* last (?P<m>\d+) minutes",
            "先に本人確認をしてください。セキュリティ情報の変更には直近 {m} 分以内のコードが必要です。",
        ),
        (r"\S+ applied for MFA on .*", "MFA は申請済みです。申請の取り消しや再申請はできません。"),
        (r"there is no account (?P<u>\S+)", "アカウント {u} はありません。"),
        (r"there is no live token \S+", "その API トークンは見つからないか、取り消し済みです。"),
        (r"say what the token is for", "トークンの用途を入力してください。"),
        (
            r"say how the person's identity was checked.*",
            "本人確認の方法を入力してください（監査ログに記録されます）。",
        ),
        (r"'(?P<u>.*)' is not a user name; a user name is .*", "「{u}」はユーザー名として正しくありません。"),
        (r"the part after @ must be .*", "@ の後ろのドメインが正しくありません。"),
        (
            r"(?P<what>\S+) '(?P<v>.*)' is not a date; write it as YYYY-MM-DD",
            "{what} の「{v}」は日付ではありません。YYYY-MM-DD の形式で入力してください。",
        ),
        (
            r"role '(?P<r>.*)' is not known; use one of: (?P<roles>.*)",
            "身分「{r}」は使えません。次のいずれかにしてください：{roles}",
        ),
        (
            r"the name is (?P<n>\d+) characters long; at most (?P<m>\d+) are kept",
            "氏名が {n} 文字あります。{m} 文字以内にしてください。",
        ),
        (r"the name contains control characters", "氏名に制御文字が含まれています。"),
        (r"the e-mail address is longer than 254 characters", "メールアドレスが 254 文字を超えています。"),
        (
            r"e-mail address '(?P<e>.*)' does not look like name@domain",
            "メールアドレス「{e}」の形式が正しくありません（name@domain の形式）。",
        ),
        (
            r"the affiliation ends \((?P<e>.*)\) before it starts \((?P<s>.*)\)",
            "所属期間の終了日（{e}）が開始日（{s}）より前です。",
        ),
        (
            r"\S+ already has a (?P<r>\S+) affiliation from (?P<s>\S+) .* overlapping this one",
            "{s} から始まる同じ身分（{r}）の所属期間と重なっています。",
        ),
        (r"completed_on (?P<d>\S+) is in the future", "修了日 {d} が未来の日付です。"),
        (r"the file is empty; the first line must name the columns", "ファイルが空です。1 行目に列名が必要です。"),
        (r"the header lacks column\(s\) (?P<m>.*); expected (?P<c>.*)", "見出し行に列 {m} がありません。必要な列：{c}"),
        (r"line (?P<n>\d+): not valid CSV: .*", "{n} 行目：CSV として読み取れません。"),
    )
]


def pick_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The user's choice (cookie) first, then the browser's order of preference."""
    if cookie in LANGUAGES:
        return str(cookie)
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        lang = tag.split("-")[0].strip().lower()
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if lang in LANGUAGES and (best is None or weight > best[0]):
            best = (weight, lang)
    return best[1] if best else default


class Translator:
    def __init__(
        self, lang: str, zone: ZoneInfo, helpdesk: tuple[str, str] = ("the IT help desk", "IT ヘルプデスク")
    ) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self.zone = zone
        self._helpdesk = helpdesk  # (English, Japanese): the configured name, said in the page's language

    @property
    def helpdesk(self) -> str:
        return self._helpdesk[1] if self.lang == "ja" else self._helpdesk[0]

    def __call__(self, key: str, **kw: object) -> str:
        en, ja = MESSAGES[key]
        text = ja if self.lang == "ja" else en
        return text.format(**kw) if kw else text

    def time(self, at: datetime | None) -> str:
        return format_local(at, self.zone) if at else ""

    def when(self, at: datetime | str | None) -> str:
        """A stored time (a datetime or its ISO text, UTC) as local time in the configured zone."""
        if not at:
            return ""
        if isinstance(at, str):
            try:
                parsed = datetime.fromisoformat(at)
            except ValueError:
                return at
        else:
            parsed = at
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return format_local(parsed, self.zone)

    def day(self, at: datetime | str | None) -> str:
        """Only the local date of a stored time."""
        return self.when(at)[:10]

    def from_time(self, at: datetime | None) -> str:
        """When something becomes possible: the first whole minute at or after `at`."""
        return format_from(at, self.zone) if at else ""

    def reason(self, r: Reason) -> str:
        """A policy reason in the user's language, from its code and facts."""
        if self.lang != "ja" or r.code not in REASONS:
            return r.message
        params = {**r.params, "at": self.from_time(r.until), "helpdesk": self.helpdesk}
        try:
            return REASONS[r.code][1].format(**params)
        except KeyError:
            return r.message

    def method(self, m: Any) -> str:
        """A verification method's name in the page's language. The service and the sign-in engine name
        methods in English ("Authenticator app", "Mobile phone +81********78"); the kind word is swapped."""
        label = str(m.get("label") if isinstance(m, dict) else getattr(m, "label", "")) or ""
        if label == "Authenticator app":
            return self("method.totp")
        kind = re.fullmatch(r"(Mobile|Alternate|Office) phone(?: (.*))?", label)
        if kind:
            return f"{self('method.phone.' + kind.group(1).lower())} {kind.group(2) or ''}".strip()
        return label

    def device(self, label: str) -> str:
        """A trusted device's name ("Chrome on Windows", made at sign-in) in the page's language."""
        if self.lang != "ja":
            return label
        browser, _, system = label.partition(" on ")
        browser = {"Browser": "ブラウザー"}.get(browser, browser)
        system = {"unknown system": "不明なシステム"}.get(system, system)
        return f"{browser}（{system}）" if system else browser

    def event(self, code: str) -> str:
        """An audit event in words; an event not named here (a new one) shows its code."""
        names = EVENTS.get(code)
        return (names[1] if self.lang == "ja" else names[0]) if names else code

    def outcome(self, outcome: str) -> str:
        return self(f"outcome.{outcome}") if f"outcome.{outcome}" in MESSAGES else outcome

    def actor(self, actor: str) -> str:
        return self("actor.system") if actor == "system" else actor

    def service_error(self, exc: Exception | str) -> str:
        """A service error in the page's language: its English sentence, or the Japanese one it matches."""
        text = str(exc)
        if self.lang != "ja":
            return text
        for pattern, ja in SERVICE_JA:
            m = pattern.fullmatch(text)
            if m:
                return ja.format(**m.groupdict(), helpdesk=self.helpdesk)
        return text

    def engine(self, text: str | None, code: str | None = None) -> str:
        if text is None:
            return ""
        if self.lang != "ja":
            return text
        return ENGINE_JA.get(code or "", ENGINE_JA.get(text, text))
