using System.Text;

namespace SharpLens.Visualization;

/// <summary>
/// One self-contained, offline HTML page of headings, text, styled tables, plotly figures and attention views.
/// plotly.js is inlined once (only if there is a figure); the page references no URL, so it opens anywhere
/// without network. Blocks appear in the order they were added; figures are serialised when the page is rendered.
/// </summary>
public sealed class HtmlReport
{
    readonly List<Func<string>> blocks = [];
    int figures, views;

    /// <summary>Creates an empty report; <paramref name="title"/> is the page title and top heading.</summary>
    public HtmlReport(string title) => Title = title;

    /// <summary>Page title.</summary>
    public string Title { get; }

    /// <summary>Adds a section heading.</summary>
    public void AddHeading(string text) => Add($"<h2>{Html(text)}</h2>");

    /// <summary>Adds a paragraph of plain text (HTML-escaped; line breaks kept).</summary>
    public void AddParagraph(string text) => Add($"<p>{Html(text).Replace("\n", "<br>")}</p>");

    /// <summary>Adds a table; every row must have one cell per header. Cell styles become inline CSS.</summary>
    public void AddTable(string title, IReadOnlyList<string> headers, IReadOnlyList<IReadOnlyList<ReportCell>> rows)
    {
        for (int r = 0; r < rows.Count; r++)
            if (rows[r].Count != headers.Count)
                throw new SharpLensException($"Table '{title}': row {r} has {rows[r].Count} cells but there are {headers.Count} headers; each row needs one cell per header.");
        var sb = new StringBuilder("<table class=\"sl-table\">");
        sb.Append($"<caption>{Html(title)}</caption><thead><tr>");
        foreach (var h in headers) sb.Append($"<th>{Html(h)}</th>");
        sb.Append("</tr></thead><tbody>");
        foreach (var row in rows)
        {
            sb.Append("<tr>");
            foreach (var c in row) sb.Append(c.Style.Length == 0 ? "<td>" : $"<td style=\"{c.Style}\">").Append(Html(c.Text)).Append("</td>");
            sb.Append("</tr>");
        }
        Add(sb.Append("</tbody></table>").ToString());
    }

    /// <summary>Adds a plotly figure (its JSON is taken when the report is rendered).</summary>
    public void AddFigure(PlotFigure figure)
    {
        string id = $"sl-fig-{++figures}";
        blocks.Add(() => $"<div class=\"sl-figure\" id=\"{id}\"></div>\n<script>(function () {{ var f = {figure.ToJson()}; " +
                         $"Plotly.newPlot(\"{id}\", f.data, f.layout, {{ displaylogo: false, responsive: true }}); }})();</script>");
    }

    /// <summary>Adds an interactive attention view (see <see cref="AttentionView"/>).</summary>
    public void AddAttentionView(AttentionView view)
    {
        string id = $"sl-attn-{++views}";
        blocks.Add(() => $"<h3>{Html(view.Title)}</h3>\n<div class=\"sl-attention\" id=\"{id}\"></div>\n<script>slAttention(\"{id}\", {view.ToJson()});</script>");
    }

    /// <summary>The whole page. Throws <see cref="SharpLensException"/> if a block cannot be rendered.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        sb.Append($"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{Html(Title)}</title>\n<style>{Css}</style>\n<script>{ErrorReporter}</script>\n");
        if (figures > 0) sb.Append("<script>\n").Append(PlotlyJs.Script).Append("\n</script>\n");
        if (views > 0) sb.Append("<script>\n").Append(AttentionView.Script).Append("</script>\n");
        sb.Append($"</head>\n<body>\n<h1>{Html(Title)}</h1>\n");
        foreach (var block in blocks) sb.Append(block()).Append('\n');
        sb.Append($"<footer>Made by SharpLens{(figures > 0 ? $"; plots by plotly.js {PlotlyJs.Version} (MIT), inlined" : "")}.</footer>\n</body>\n</html>\n");
        return sb.ToString();
    }

    /// <summary>
    /// Renders and writes the page to <paramref name="path"/> (creating its folder). Atomic: the page is rendered
    /// first, written to a temporary file beside the target and renamed over it, so a failure never leaves a
    /// half-written report (nor touches an existing one).
    /// </summary>
    public void Save(string path)
    {
        string html = Render();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.WriteText(path, html);
    }

    void Add(string html) => blocks.Add(() => html);

    /// <summary>Escapes text for HTML element content and attribute values.</summary>
    internal static string Html(string s) =>
        s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;").Replace("'", "&#39;");

    // Shows script errors on the page (a figure that fails to draw should say so, not stay blank); the browser check looks for them.
    const string ErrorReporter = """
        function slError(m) { var p = document.createElement('pre'); p.className = 'sl-error'; p.textContent = 'Report script error: ' + m; (document.body || document.documentElement).append(p); }
        window.addEventListener('error', function (e) { slError(e.message); });
        window.addEventListener('unhandledrejection', function (e) { slError(e.reason); });
        """;

    const string Css = """
        body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
        .sl-table { border-collapse: collapse; margin: 1em 0; }
        .sl-table caption { font-style: italic; padding: 0.3em; }
        .sl-table th, .sl-table td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; white-space: pre; }
        .sl-figure { margin: 1em 0; }
        .sl-attention { margin: 0.5em 0 2em; }
        .sl-heads button { margin: 0 0.2em 0.2em 0; font-family: monospace; }
        .sl-heads button.sl-on { background: #2166ac; color: white; }
        .sl-info { font-family: monospace; white-space: pre; min-height: 1.4em; margin: 0.3em 0; }
        .sl-grid { border-collapse: collapse; font-family: monospace; font-size: 12px; }
        .sl-grid td { width: 16px; height: 16px; border: 1px solid #eee; padding: 0; }
        .sl-grid th { font-weight: normal; white-space: pre; padding: 0 0.3em; }
        .sl-grid th.sl-src { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
        .sl-grid th.sl-dst { text-align: right; }
        .sl-strip { font-family: monospace; margin-top: 0.6em; line-height: 1.8; }
        .sl-tok { white-space: pre; border: 1px solid #ddd; margin-right: 1px; padding: 0 1px; cursor: default; }
        .sl-tok.sl-cur { outline: 2px solid #b2182b; }
        .sl-error { color: #b00; font-weight: bold; }
        footer { margin-top: 3em; color: #888; font-size: 0.8em; }
        """;
}

/// <summary>RGB colour of a table cell's text.</summary>
public readonly record struct ReportColor(byte R, byte G, byte B)
{
    /// <summary>CSS form, e.g. "rgb(0,200,0)".</summary>
    public override string ToString() => $"rgb({R},{G},{B})";
}

/// <summary>Text of one table cell with optional colour and bold, like a styled Rich/Spectre table cell.</summary>
/// <param name="Text">Plain text (HTML-escaped on output).</param>
/// <param name="Color">Text colour, or null for the default.</param>
/// <param name="Bold">Bold text.</param>
public sealed record ReportCell(string Text, ReportColor? Color = null, bool Bold = false)
{
    /// <summary>A plain cell.</summary>
    public static implicit operator ReportCell(string text) => new(text);

    /// <summary>Bold green, rgb(0,200,0): the seed notebook's "Correct" column.</summary>
    public static ReportCell Correct(string text) => new(text, new ReportColor(0, 200, 0), true);

    /// <summary>Bold red, rgb(255,0,0): the seed notebook's "Incorrect" column.</summary>
    public static ReportCell Incorrect(string text) => new(text, new ReportColor(255, 0, 0), true);

    /// <summary>Bold default colour: the seed notebook's number columns.</summary>
    public static ReportCell Strong(string text) => new(text, null, true);

    /// <summary>The inline CSS for this cell ("" when unstyled).</summary>
    public string Style => (Color is { } c ? $"color:{c};" : "") + (Bold ? "font-weight:bold;" : "");
}
