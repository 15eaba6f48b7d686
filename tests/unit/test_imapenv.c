/*
 * test_imapenv.c - ENVELOPE and BODYSTRUCTURE/BODY of real-shaped and
 * malformed messages, against answers written by hand from RFC 3501
 * 7.4.2 (sizes and line counts counted by hand: size = raw body octets,
 * lines = LF octets of the body, the CRLF before a delimiter belonging to
 * the delimiter), plus the serialised tree round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "store/imapenv.h"
#include "store/mime.h"

struct tcase {
	const char *name;
	const char *raw;
	size_t len;          /* 0: strlen(raw) */
	const char *envelope;
	const char *bodystructure;
	const char *body;    /* NULL: not checked */
};

#define AD_X "((NIL NIL \"x\" \"example.com\"))"

static const struct tcase cases[] = {
{ "simple text",
  "From: Alice <alice@example.com>\r\n"
  "To: bob@example.org\r\n"
  "Subject: Hello\r\n"
  "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
  "Message-ID: <B27397-0100000@example.com>\r\n"
  "\r\n"
  "Hi Bob.\r\n"
  "Bye.\r\n", 0,
  "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hello\" ((\"Alice\" NIL \"alice\" \"example.com\")) "
  "((\"Alice\" NIL \"alice\" \"example.com\")) ((\"Alice\" NIL \"alice\" \"example.com\")) "
  "((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL \"<B27397-0100000@example.com>\")",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 15 2 NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 15 2)" },

{ "no body",
  "From: a@b.example\r\n"
  "Subject: empty\r\n"
  "\r\n", 0,
  "(NIL \"empty\" ((NIL NIL \"a\" \"b.example\")) ((NIL NIL \"a\" \"b.example\")) "
  "((NIL NIL \"a\" \"b.example\")) NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)" },

{ "no header",
  "\r\n"
  "Just a body\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)",
  NULL },

{ "header only, no blank line",
  "Subject: only headers\r\n"
  "From: x@y.example\r\n", 0,
  "(NIL \"only headers\" ((NIL NIL \"x\" \"y.example\")) ((NIL NIL \"x\" \"y.example\")) "
  "((NIL NIL \"x\" \"y.example\")) NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
  NULL },

{ "empty message", "", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
  NULL },

{ "multipart/mixed with attachment, preamble, epilogue",
  "From: Carol <carol@example.net>\r\n"
  "To: Dave <dave@example.net>, eve@example.net\r\n"
  "Subject: Report\r\n"
  "MIME-Version: 1.0\r\n"
  "Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
  "\r\n"
  "This is a preamble.\r\n"
  "--XYZ\r\n"
  "Content-Type: text/plain; charset=utf-8\r\n"
  "\r\n"
  "See attached.\r\n"
  "--XYZ\r\n"
  "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
  "Content-Transfer-Encoding: base64\r\n"
  "Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
  "\r\n"
  "JVBERi0xLjQK\r\n"
  "--XYZ--\r\n"
  "Epilogue.\r\n", 0,
  "(NIL \"Report\" ((\"Carol\" NIL \"carol\" \"example.net\")) ((\"Carol\" NIL \"carol\" \"example.net\")) "
  "((\"Carol\" NIL \"carol\" \"example.net\")) "
  "((\"Dave\" NIL \"dave\" \"example.net\")(NIL NIL \"eve\" \"example.net\")) NIL NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 13 0 NIL NIL NIL NIL)"
  "(\"APPLICATION\" \"PDF\" (\"NAME\" \"r.pdf\") NIL NIL \"BASE64\" 12 NIL "
  "(\"ATTACHMENT\" (\"FILENAME\" \"r.pdf\")) NIL NIL) \"MIXED\" (\"BOUNDARY\" \"XYZ\") NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 13 0)"
  "(\"APPLICATION\" \"PDF\" (\"NAME\" \"r.pdf\") NIL NIL \"BASE64\" 12) \"MIXED\")" },

{ "multipart/alternative nested in mixed",
  "From: f@example.com\r\n"
  "Subject: nested\r\n"
  "Content-Type: multipart/mixed; boundary=outer\r\n"
  "\r\n"
  "--outer\r\n"
  "Content-Type: multipart/alternative; boundary=inner\r\n"
  "\r\n"
  "--inner\r\n"
  "Content-Type: text/plain\r\n"
  "\r\n"
  "plain\r\n"
  "--inner\r\n"
  "Content-Type: text/html\r\n"
  "\r\n"
  "<b>html</b>\r\n"
  "--inner--\r\n"
  "--outer\r\n"
  "Content-Type: image/png\r\n"
  "Content-Transfer-Encoding: base64\r\n"
  "Content-ID: <img1@example.com>\r\n"
  "\r\n"
  "iVBORw0KGgo=\r\n"
  "--outer--\r\n", 0,
  "(NIL \"nested\" ((NIL NIL \"f\" \"example.com\")) ((NIL NIL \"f\" \"example.com\")) "
  "((NIL NIL \"f\" \"example.com\")) NIL NIL NIL NIL NIL)",
  "(((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)"
  "(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL)"
  "(\"IMAGE\" \"PNG\" NIL \"<img1@example.com>\" NIL \"BASE64\" 12 NIL NIL NIL NIL)"
  " \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)",
  "(((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 5 0)(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 11 0) \"ALTERNATIVE\")"
  "(\"IMAGE\" \"PNG\" NIL \"<img1@example.com>\" NIL \"BASE64\" 12) \"MIXED\")" },

{ "message/rfc822 attachment with its own multipart",
  "From: g@example.com\r\n"
  "Subject: fwd\r\n"
  "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
  "\r\n"
  "--b1\r\n"
  "\r\n"
  "Forwarded below.\r\n"
  "--b1\r\n"
  "Content-Type: message/rfc822\r\n"
  "\r\n"
  "From: h@example.com\r\n"
  "Subject: inner\r\n"
  "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
  "\r\n"
  "--b2\r\n"
  "Content-Type: text/plain; charset=us-ascii\r\n"
  "\r\n"
  "one\r\n"
  "two\r\n"
  "--b2\r\n"
  "Content-Type: text/html; charset=us-ascii\r\n"
  "\r\n"
  "<p>one two</p>\r\n"
  "--b2--\r\n"
  "\r\n"
  "--b1--\r\n", 0,
  "(NIL \"fwd\" ((NIL NIL \"g\" \"example.com\")) ((NIL NIL \"g\" \"example.com\")) "
  "((NIL NIL \"g\" \"example.com\")) NIL NIL NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 16 0 NIL NIL NIL NIL)"
  "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 228 "
  "(NIL \"inner\" ((NIL NIL \"h\" \"example.com\")) ((NIL NIL \"h\" \"example.com\")) "
  "((NIL NIL \"h\" \"example.com\")) NIL NIL NIL NIL NIL) "
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 8 1 NIL NIL NIL NIL)"
  "(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 14 0 NIL NIL NIL NIL)"
  " \"ALTERNATIVE\" (\"BOUNDARY\" \"b2\") NIL NIL NIL) 14 NIL NIL NIL NIL)"
  " \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 16 0)"
  "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 228 "
  "(NIL \"inner\" ((NIL NIL \"h\" \"example.com\")) ((NIL NIL \"h\" \"example.com\")) "
  "((NIL NIL \"h\" \"example.com\")) NIL NIL NIL NIL NIL) "
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 8 1)"
  "(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 14 0) \"ALTERNATIVE\") 14) \"MIXED\")" },

{ "encoded words in Subject, From, To",
  "From: =?UTF-8?B?SsO2cmc=?= <joerg@example.de>\r\n"
  "To: =?ISO-8859-1?Q?Fran=E7ois?= <fr@example.fr>\r\n"
  "Subject: =?UTF-8?B?w4RwZmVs?= und =?ISO-8859-1?Q?Birnen_=E4?=\r\n"
  "\r\n"
  "x\r\n", 0,
  "(NIL \"=?UTF-8?B?w4RwZmVs?= und =?ISO-8859-1?Q?Birnen_=E4?=\" "
  "((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"joerg\" \"example.de\")) "
  "((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"joerg\" \"example.de\")) "
  "((\"=?UTF-8?B?SsO2cmc=?=\" NIL \"joerg\" \"example.de\")) "
  "((\"=?ISO-8859-1?Q?Fran=E7ois?=\" NIL \"fr\" \"example.fr\")) NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL)",
  NULL },

{ "address groups",
  "From: boss@example.com\r\n"
  "To: Team: ann@example.com, Bob <bob@example.com>;, solo@example.com\r\n"
  "Cc: undisclosed-recipients:;\r\n"
  "Subject: groups\r\n"
  "\r\n", 0,
  "(NIL \"groups\" ((NIL NIL \"boss\" \"example.com\")) ((NIL NIL \"boss\" \"example.com\")) "
  "((NIL NIL \"boss\" \"example.com\")) "
  "((NIL NIL \"Team\" NIL)(NIL NIL \"ann\" \"example.com\")(\"Bob\" NIL \"bob\" \"example.com\")"
  "(NIL NIL NIL NIL)(NIL NIL \"solo\" \"example.com\")) "
  "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
  NULL },

{ "multipart without boundary parameter",
  "Subject: nobound\r\n"
  "Content-Type: multipart/mixed\r\n"
  "\r\n"
  "--foo\r\n"
  "Content-Type: text/plain\r\n"
  "\r\n"
  "hi\r\n"
  "--foo--\r\n", 0,
  "(NIL \"nobound\" NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 48 5 NIL NIL NIL NIL)",
  NULL },

{ "multipart whose boundary never occurs",
  "Content-Type: multipart/mixed; boundary=never\r\n"
  "\r\n"
  "no parts here\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 15 1 NIL NIL NIL NIL)",
  NULL },

{ "missing final boundary",
  "Subject: trunc\r\n"
  "Content-Type: multipart/mixed; boundary=zz\r\n"
  "\r\n"
  "--zz\r\n"
  "Content-Type: text/plain\r\n"
  "\r\n"
  "first\r\n"
  "--zz\r\n"
  "Content-Type: text/plain\r\n"
  "\r\n"
  "second, cut off\r\n", 0,
  "(NIL \"trunc\" NIL NIL NIL NIL NIL NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)"
  "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 17 1 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"zz\") NIL NIL NIL)",
  NULL },

{ "no preamble, two-line epilogue",
  "Content-Type: multipart/mixed; boundary=pp\r\n"
  "\r\n"
  "--pp\r\n"
  "\r\n"
  "body\r\n"
  "--pp--\r\n"
  "epilogue line 1\r\n"
  "epilogue line 2\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 0 NIL NIL NIL NIL)"
  " \"MIXED\" (\"BOUNDARY\" \"pp\") NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 0) \"MIXED\")" },

{ "8-bit header octets become literals",
  "From: J\xc3\xbcrgen <j@example.de>\r\n"
  "Subject: Gr\xc3\xbc\xc3\x9f" "e\r\n"
  "\r\n"
  "ok\r\n", 0,
  "(NIL {7}\r\nGr\xc3\xbc\xc3\x9f" "e "
  "(({7}\r\nJ\xc3\xbcrgen NIL \"j\" \"example.de\")) "
  "(({7}\r\nJ\xc3\xbcrgen NIL \"j\" \"example.de\")) "
  "(({7}\r\nJ\xc3\xbcrgen NIL \"j\" \"example.de\")) NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1 NIL NIL NIL NIL)",
  NULL },

{ "bare LF line ends",
  "Subject: lf\n"
  "Content-Type: multipart/mixed; boundary=LF\n"
  "\n"
  "--LF\n"
  "Content-Type: text/plain\n"
  "\n"
  "line1\n"
  "line2\n"
  "--LF\n"
  "Content-Type: text/plain\n"
  "Content-Transfer-Encoding: quoted-printable\n"
  "\n"
  "q=3Dp\n"
  "--LF--\n", 0,
  "(NIL \"lf\" NIL NIL NIL NIL NIL NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)"
  "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"QUOTED-PRINTABLE\" 5 0 NIL NIL NIL NIL)"
  " \"MIXED\" (\"BOUNDARY\" \"LF\") NIL NIL NIL)",
  NULL },

{ "mixed CRLF and LF",
  "Content-Type: multipart/mixed; boundary=m\r\n"
  "\r\n"
  "--m\n"
  "\n"
  "a\r\n"
  "--m\r\n"
  "\r\n"
  "b\n"
  "--m--\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0 NIL NIL NIL NIL)"
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1 0 NIL NIL NIL NIL)"
  " \"MIXED\" (\"BOUNDARY\" \"m\") NIL NIL NIL)",
  NULL },

{ "duplicate header fields: the first wins",
  "Subject: first\r\n"
  "Subject: second\r\n"
  "From: one@example.com\r\n"
  "From: two@example.com\r\n"
  "Content-Type: text/html\r\n"
  "Content-Type: text/plain\r\n"
  "\r\n"
  "<p>\r\n", 0,
  "(NIL \"first\" ((NIL NIL \"one\" \"example.com\")) ((NIL NIL \"one\" \"example.com\")) "
  "((NIL NIL \"one\" \"example.com\")) NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)",
  NULL },

{ "folded header fields",
  "Subject: this is\r\n"
  " a folded\r\n"
  "\tsubject\r\n"
  "To: \"Smith, John\"\r\n"
  "  <john@example.com>,\r\n"
  " jane@example.com\r\n"
  "Content-Type: text/plain;\r\n"
  "\tcharset=\"iso-8859-1\"\r\n"
  "\r\n"
  "body\r\n", 0,
  "(NIL \"this is a folded\tsubject\" NIL NIL NIL "
  "((\"Smith, John\" NIL \"john\" \"example.com\")(NIL NIL \"jane\" \"example.com\")) NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"iso-8859-1\") NIL NIL \"7BIT\" 6 1 NIL NIL NIL NIL)",
  NULL },

{ "quoted-string parameters with escapes",
  "Content-Type: application/octet-stream; name=\"we \\\"quote\\\" and \\\\ back\"\r\n"
  "Content-Disposition: attachment; filename=\"a\\;b.txt\"; size=42\r\n"
  "\r\n"
  "data\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"we \\\"quote\\\" and \\\\ back\") NIL NIL \"7BIT\" 6 "
  "NIL (\"ATTACHMENT\" (\"FILENAME\" \"a;b.txt\" \"SIZE\" \"42\")) NIL NIL)",
  "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"we \\\"quote\\\" and \\\\ back\") NIL NIL \"7BIT\" 6)" },

{ "RFC 2231 parameters passed through",
  "Content-Type: text/plain; charset=us-ascii;\r\n"
  " title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\r\n"
  "Content-Disposition: attachment;\r\n"
  " filename*0*=UTF-8''na%C3%AFve;\r\n"
  " filename*1=\".txt\"\r\n"
  "\r\n"
  "x\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\" \"TITLE*\" \"us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\")"
  " NIL NIL \"7BIT\" 3 1 NIL (\"ATTACHMENT\" (\"FILENAME*0*\" \"UTF-8''na%C3%AFve\" \"FILENAME*1\" \".txt\"))"
  " NIL NIL)",
  NULL },

{ "disposition, language, location, md5, description, id",
  "Content-Type: text/plain; charset=utf-8\r\n"
  "Content-Disposition: inline; filename=notes.txt\r\n"
  "Content-Language: en, de-CH\r\n"
  "Content-Location: http://example.com/notes.txt\r\n"
  "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
  "Content-Description: Meeting notes\r\n"
  "Content-ID: <notes@example.com>\r\n"
  "\r\n"
  "hello\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") \"<notes@example.com>\" \"Meeting notes\" \"7BIT\" 7 1 "
  "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"INLINE\" (\"FILENAME\" \"notes.txt\")) (\"en\" \"de-CH\") "
  "\"http://example.com/notes.txt\")",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") \"<notes@example.com>\" \"Meeting notes\" \"7BIT\" 7 1)" },

{ "multipart extension data",
  "Content-Type: multipart/related; boundary=r; type=\"text/html\"\r\n"
  "Content-Language: fr\r\n"
  "Content-Location: http://example.com/\r\n"
  "\r\n"
  "--r\r\n"
  "Content-Type: text/html\r\n"
  "\r\n"
  "<img>\r\n"
  "--r--\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "((\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL) \"RELATED\" "
  "(\"BOUNDARY\" \"r\" \"TYPE\" \"text/html\") NIL (\"fr\") \"http://example.com/\")",
  "((\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 5 0) \"RELATED\")" },

{ "In-Reply-To, Message-ID, Sender, Reply-To, Cc, Bcc; no Date",
  "From: Ann <ann@example.com>\r\n"
  "Sender: secretary@example.com\r\n"
  "Reply-To: list@example.com\r\n"
  "To: ben@example.com\r\n"
  "Cc: Carl <carl@example.com>\r\n"
  "Bcc: dan@example.com\r\n"
  "Subject: Re: plans\r\n"
  "In-Reply-To: <orig@example.com>\r\n"
  "Message-ID: <reply@example.com>\r\n"
  "\r\n"
  "ok\r\n", 0,
  "(NIL \"Re: plans\" ((\"Ann\" NIL \"ann\" \"example.com\")) ((NIL NIL \"secretary\" \"example.com\")) "
  "((NIL NIL \"list\" \"example.com\")) ((NIL NIL \"ben\" \"example.com\")) "
  "((\"Carl\" NIL \"carl\" \"example.com\")) ((NIL NIL \"dan\" \"example.com\")) "
  "\"<orig@example.com>\" \"<reply@example.com>\")",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1 NIL NIL NIL NIL)",
  NULL },

{ "address forms: comment name, route, quoted local part, domain literal, no domain",
  "From: john.doe@example.com (John Doe)\r\n"
  "To: <@relay.example,@hop.example:user@dest.example>, \"odd local\"@example.org, Rob <rob@[192.0.2.1]>\r\n"
  "Cc: nodomain\r\n"
  "\r\n", 0,
  "(NIL NIL ((\"John Doe\" NIL \"john.doe\" \"example.com\")) ((\"John Doe\" NIL \"john.doe\" \"example.com\")) "
  "((\"John Doe\" NIL \"john.doe\" \"example.com\")) "
  "((NIL \"@relay.example,@hop.example\" \"user\" \"dest.example\")(NIL NIL \"odd local\" \"example.org\")"
  "(\"Rob\" NIL \"rob\" \"[192.0.2.1]\")) ((NIL NIL \"nodomain\" \"MISSING_DOMAIN\")) NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
  NULL },

{ "multipart/digest parts default to message/rfc822",
  "Content-Type: multipart/digest; boundary=d\r\n"
  "\r\n"
  "--d\r\n"
  "\r\n"
  "From: x@example.com\r\n"
  "Subject: one\r\n"
  "\r\n"
  "first\r\n"
  "--d--\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 42 "
  "(NIL \"one\" " AD_X " " AD_X " " AD_X " NIL NIL NIL NIL NIL) "
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)"
  " \"DIGEST\" (\"BOUNDARY\" \"d\") NIL NIL NIL)",
  NULL },

{ "NUL octets", "Subject: a\0b\r\n\r\nx\0y\r\n", sizeof("Subject: a\0b\r\n\r\nx\0y\r\n") - 1,
  "(NIL \"ab\" NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)",
  NULL },

{ "base64 message/rfc822 is opaque",
  "Content-Type: message/rfc822\r\n"
  "Content-Transfer-Encoding: base64\r\n"
  "\r\n"
  "U3ViamVjdDogeA0KDQp5DQo=\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 26 NIL NIL NIL NIL)",
  NULL },

{ "invalid Content-Type means text/plain",
  "Content-Type: text\r\n"
  "\r\n"
  "hi\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 4 1 NIL NIL NIL NIL)",
  NULL },

{ "quotes and backslashes in a subject; empty Sender and Reply-To",
  "From: a@example.com\r\n"
  "Sender:\r\n"
  "Reply-To:   \r\n"
  "Subject: say \"hi\" \\ bye\r\n"
  "\r\n", 0,
  "(NIL \"say \\\"hi\\\" \\\\ bye\" ((NIL NIL \"a\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) "
  "((NIL NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL)",
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
  NULL },

{ "top-level message/rfc822",
  "Content-Type: message/rfc822\r\n"
  "\r\n"
  "Subject: in\r\n"
  "\r\n"
  "x\r\n", 0,
  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
  "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 18 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) "
  "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)",
  NULL },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static size_t
case_len(const struct tcase *c)
{
	return c->len ? c->len : strlen(c->raw);
}

/* One cmocka test per case: state is the case. */
static void
test_case(void **state)
{
	const struct tcase *c = *state;
	struct imapenv r;

	imapenv_build(c->raw, case_len(c), &r);
	assert_string_equal(buf_cstr(&r.envelope), c->envelope);
	assert_string_equal(buf_cstr(&r.bodystructure), c->bodystructure);
	if (c->body != NULL)
		assert_string_equal(buf_cstr(&r.body), c->body);
	imapenv_free(&r);
}

/* The deepest nesting: 60 multiparts inside each other, no close
 * delimiters.  Depths 0..49 are multiparts; the one at depth 50 is left
 * opaque (application/octet-stream) holding the rest of the message. */
static void
test_deep_nesting(void **state)
{
	struct buf msg = BUF_INIT, want = BUF_INIT;
	struct imapenv r;
	struct mime_tree t;
	size_t opaque_body_start = 0;
	int i;

	(void)state;
	for (i = 0; i < 60; i++) {
		buf_printf(&msg, "Content-Type: multipart/mixed; boundary=b%02d\r\n\r\n", i);
		if (i == 50)
			opaque_body_start = msg.len;
		buf_printf(&msg, "--b%02d\r\n", i);
	}
	buf_puts(&msg, "\r\nleaf\r\n");

	for (i = 0; i < 50; i++)
		buf_putc(&want, '(');
	buf_printf(&want, "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" %zu NIL NIL NIL NIL)",
		msg.len - opaque_body_start);
	for (i = 49; i >= 0; i--)
		buf_printf(&want, " \"MIXED\" (\"BOUNDARY\" \"b%02d\") NIL NIL NIL)", i);

	imapenv_build(msg.data, msg.len, &r);
	assert_string_equal(buf_cstr(&r.bodystructure), buf_cstr(&want));
	mime_parse(&t, msg.data, msg.len);
	assert_int_equal(t.nparts, 51);
	assert_int_equal(t.parts[50].kind, MIME_KIND_LEAF);
	assert_true(t.parts[50].flags & MIME_PF_CAPPED);
	assert_true(t.parts[49].flags & MIME_PF_TRUNCATED);
	mime_tree_free(&t);
	imapenv_free(&r);
	buf_free(&msg);
	buf_free(&want);
}

static void
test_long_string_is_literal(void **state)
{
	struct buf msg = BUF_INIT, want = BUF_INIT;
	struct imapenv r;
	int i;

	(void)state;
	buf_puts(&msg, "Subject: ");
	for (i = 0; i < 1100; i++)
		buf_putc(&msg, 'a' + i % 26);
	buf_puts(&msg, "\r\n\r\n");
	buf_puts(&want, "(NIL {1100}\r\n");
	buf_append(&want, msg.data + 9, 1100);
	buf_puts(&want, " NIL NIL NIL NIL NIL NIL NIL NIL)");
	imapenv_build(msg.data, msg.len, &r);
	assert_string_equal(buf_cstr(&r.envelope), buf_cstr(&want));
	imapenv_free(&r);
	buf_free(&msg);
	buf_free(&want);
}

static void
assert_trees_equal(const struct mime_tree *a, const struct mime_tree *b)
{
	uint32_t i;

	assert_int_equal(a->nparts, b->nparts);
	assert_int_equal(a->len, b->len);
	for (i = 0; i < a->nparts; i++) {
		assert_int_equal(a->parts[i].hdr_start, b->parts[i].hdr_start);
		assert_int_equal(a->parts[i].body_start, b->parts[i].body_start);
		assert_int_equal(a->parts[i].body_end, b->parts[i].body_end);
		assert_int_equal(a->parts[i].parent, b->parts[i].parent);
		assert_int_equal(a->parts[i].first_child, b->parts[i].first_child);
		assert_int_equal(a->parts[i].next, b->parts[i].next);
		assert_int_equal(a->parts[i].nchildren, b->parts[i].nchildren);
		assert_int_equal(a->parts[i].kind, b->parts[i].kind);
		assert_int_equal(a->parts[i].flags, b->parts[i].flags);
		assert_int_equal(a->parts[i].depth, b->parts[i].depth);
	}
}

static void
test_tree_roundtrip(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NCASES; i++) {
		struct imapenv r;
		struct mime_tree a, b;
		struct err err;

		imapenv_build(cases[i].raw, case_len(&cases[i]), &r);
		mime_parse(&a, cases[i].raw, case_len(&cases[i]));
		assert_int_equal(imapenv_tree_decode(r.tree.data, r.tree.len, &b, &err), 0);
		assert_false(b.have_fields);
		assert_trees_equal(&a, &b);
		/* compact: a handful of octets per part */
		assert_true(r.tree.len <= 8 + (size_t)a.nparts * 16);
		mime_tree_free(&a);
		mime_tree_free(&b);
		imapenv_free(&r);
	}
}

static void
test_tree_decode_rejects(void **state)
{
	struct mime_tree t;
	struct err err;
	struct imapenv r;
	const char *msg = cases[6].raw; /* nested multipart */
	size_t k;
	static const unsigned char bad_magic[] = { 'X', 1, 0, 1, 0, 0, 0, 0, 0 };
	/* leaf root that does not cover the message */
	static const unsigned char short_root[] = { 'M', 1, 10, 1, 0, 0, 0, 5, 0 };
	/* message with 2 children */
	static const unsigned char msg2[] = { 'M', 1, 10, 3, 2, 0, 0, 10, 2,
		0, 0, 0, 5, 0, 0, 5, 0, 5, 0 };
	/* multipart whose child overlaps the header */
	static const unsigned char overlap[] = { 'M', 1, 10, 2, 1, 0, 4, 6, 1, 0, 2, 0, 1, 0 };
	/* a leaf with children */
	static const unsigned char leafkids[] = { 'M', 1, 10, 2, 0, 0, 0, 10, 1, 0, 0, 0, 10, 0 };
	/* the varint overflows */
	static const unsigned char overflow[] = { 'M', 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 0, 0 };
	/* good tree with trailing garbage */
	static const unsigned char trailing[] = { 'M', 1, 10, 1, 0, 0, 0, 10, 0, 0 };
	static const unsigned char good[] = { 'M', 1, 10, 1, 0, 0, 0, 10, 0 };

	(void)state;
	assert_int_equal(imapenv_tree_decode(bad_magic, sizeof(bad_magic), &t, &err), -1);
	assert_int_equal(err.kind, ERR_CORRUPT);
	assert_int_equal(imapenv_tree_decode(short_root, sizeof(short_root), &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(msg2, sizeof(msg2), &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(overlap, sizeof(overlap), &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(leafkids, sizeof(leafkids), &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(overflow, sizeof(overflow), &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(trailing, sizeof(trailing), &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(good, sizeof(good), &t, &err), 0);
	assert_int_equal(t.nparts, 1);
	assert_int_equal(t.parts[0].body_end, 10);
	mime_tree_free(&t);

	/* every truncation of a real tree is rejected */
	imapenv_build(msg, strlen(msg), &r);
	for (k = 0; k < r.tree.len; k++)
		assert_int_equal(imapenv_tree_decode(r.tree.data, k, &t, &err), -1);
	assert_int_equal(imapenv_tree_decode(r.tree.data, r.tree.len, &t, &err), 0);
	mime_tree_free(&t);
	imapenv_free(&r);
}

/* Every prefix of every message parses, renders balanced output, and
 * round-trips through the serialised tree. */
static int
balanced(const char *s, size_t n)
{
	size_t i;
	int depth = 0;
	bool q = false;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (q) {
			if (c == '\\')
				i++;
			else if (c == '"')
				q = false;
			continue;
		}
		if (c == '"') {
			q = true;
		} else if (c == '{') {
			size_t len = strtoul(s + i + 1, NULL, 10);
			const char *e = memchr(s + i, '}', n - i);

			if (e == NULL || (size_t)(e - s) + 3 + len > n)
				return 0;
			i = (size_t)(e - s) + 2 + len;
		} else if (c == '(') {
			depth++;
		} else if (c == ')') {
			if (--depth < 0)
				return 0;
		}
	}
	return depth == 0 && !q;
}

static void
test_every_truncation(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < NCASES; i++) {
		size_t len = case_len(&cases[i]);

		for (k = 0; k <= len; k++) {
			char *copy = xmemdup(cases[i].raw, k);
			struct imapenv r;
			struct mime_tree a, b;
			struct err err;

			imapenv_build(copy, k, &r);
			assert_true(balanced(r.envelope.data, r.envelope.len));
			assert_true(balanced(r.bodystructure.data, r.bodystructure.len));
			assert_true(balanced(r.body.data, r.body.len));
			mime_parse(&a, copy, k);
			assert_int_equal(imapenv_tree_decode(r.tree.data, r.tree.len, &b, &err), 0);
			assert_trees_equal(&a, &b);
			mime_tree_free(&a);
			mime_tree_free(&b);
			imapenv_free(&r);
			free(copy);
		}
	}
}

/* The plain-text addresses SEARCH FROM/TO/CC/BCC match on. */
static void
test_address_text(void **state)
{
	static const struct {
		const char *in, *want;
	} acases[] = {
		{ "<user-from (comment)@ (comment) domain.org>", "comment <user-from@domain.org>" },
		{ " \"Some One\" <a@\r\n (folded) b.org>, other (x) @ c.net",
		  "Some One <a@b.org>, x <other@c.net>" },
		{ "Group: u (c)@d.org, v@e.org;", "Group:, c <u@d.org>, <v@e.org>" },
		{ "bare", "<bare>" },
		{ "", "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(acases) / sizeof(acases[0]); i++) {
		struct buf out = BUF_INIT;

		imapenv_address_text(acases[i].in, strlen(acases[i].in), &out);
		assert_string_equal(buf_cstr(&out), acases[i].want);
		buf_free(&out);
	}
}

int
main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_address_text),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_long_string_is_literal),
		cmocka_unit_test(test_tree_roundtrip),
		cmocka_unit_test(test_tree_decode_rejects),
		cmocka_unit_test(test_every_truncation),
	};
	struct CMUnitTest *tests;
	size_t i, n = 0;
	int rc;

	tests = xcalloc(NCASES + sizeof(fixed) / sizeof(fixed[0]), sizeof(*tests));
	for (i = 0; i < NCASES; i++) {
		tests[n].name = cases[i].name;
		tests[n].test_func = test_case;
		tests[n].initial_state = (void *)(uintptr_t)&cases[i];
		n++;
	}
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		tests[n++] = fixed[i];
	rc = _cmocka_run_group_tests("imapenv", tests, n, NULL, NULL);
	free(tests);
	return rc;
}
