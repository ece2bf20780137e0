using System.Globalization;
using System.Text.Json.Nodes;

namespace SharpLens.Visualization;

/// <summary>
/// Figures with the look of TransformerLens's notebook helpers (<c>imshow</c>, <c>line</c>, <c>bar</c> over
/// plotly.express): plotly.express's default template, heatmaps in "RdBu" centred on zero.
/// </summary>
/// <remarks>
/// Category labels (tokens!) repeat, and plotly merges equal category names into one; so labelled axes are numeric
/// 0..n-1 with the labels as tick text, and hover text carries the label of each point.
/// </remarks>
public static class Plots
{
    /// <summary>
    /// plotly.express's "RdBu" (ColorBrewer RdBu, 11 classes): low = dark red, middle = near-white, high = dark blue.
    /// With zmid 0 as in TransformerLens's <c>imshow(color_continuous_scale="RdBu", color_continuous_midpoint=0)</c>:
    /// negative = red, zero = white, positive = blue. plotly.js's built-in "RdBu" is a different, reversed scale
    /// (blue low, grey middle, red high), so the stops are given explicitly.
    /// </summary>
    public static readonly IReadOnlyList<string> RdBu =
    [
        "rgb(103,0,31)", "rgb(178,24,43)", "rgb(214,96,77)", "rgb(244,165,130)", "rgb(253,219,199)", "rgb(247,247,247)",
        "rgb(209,229,240)", "rgb(146,197,222)", "rgb(67,147,195)", "rgb(33,102,172)", "rgb(5,48,97)",
    ];

    // plotly.express's default ("plotly") template colours.
    static readonly string[] Colorway = ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52"];

    /// <summary>Line plot over labelled x positions (e.g. tokens or "L3H2"), one line per series.</summary>
    public static PlotFigure Line(string title, IReadOnlyList<string> xLabels, IReadOnlyList<PlotSeries> series, string xTitle = "", string yTitle = "")
    {
        var fig = Figure(title, xTitle, yTitle);
        var x = CategoryAxis(fig, "xaxis", xLabels);
        AddLines(fig, title, x, xLabels, series, xTitle, yTitle);
        return fig;
    }

    /// <summary>Line plot over numeric x values, one line per series.</summary>
    public static PlotFigure Line(string title, IReadOnlyList<float> x, IReadOnlyList<PlotSeries> series, string xTitle = "", string yTitle = "")
    {
        var fig = Figure(title, xTitle, yTitle);
        AddLines(fig, title, Numbers(x), [.. x.Select(v => v.ToString("G6", CultureInfo.InvariantCulture))], series, xTitle, yTitle);
        return fig;
    }

    /// <summary>Bar chart, one bar per label.</summary>
    public static PlotFigure Bar(string title, IReadOnlyList<string> labels, IReadOnlyList<float> values, string xTitle = "", string yTitle = "")
    {
        CheckLength(title, "values", values.Count, "labels", labels.Count);
        var fig = Figure(title, xTitle, yTitle);
        fig.Traces.Add(new JsonObject
        {
            ["type"] = "bar",
            ["x"] = CategoryAxis(fig, "xaxis", labels),
            ["y"] = Numbers(values),
            ["text"] = Hover(labels.Select(l => new[] { $"{Name(xTitle, "x")}: {l}", $"{Name(yTitle, "y")}: " })),
            ["textposition"] = "none",
            ["hovertemplate"] = "%{text}%{y:.4g}<extra></extra>",
        });
        return fig;
    }

    /// <summary>
    /// Heatmap of <paramref name="z"/>[row, column] like TransformerLens's <c>imshow</c>: row 0 at the top, diverging
    /// <see cref="RdBu"/> with white at 0 (zmid 0), hover shows both labels and the value. NaN/Infinity cells are blank.
    /// </summary>
    public static PlotFigure Heatmap(string title, float[,] z, IReadOnlyList<string> xLabels, IReadOnlyList<string> yLabels, string xTitle = "", string yTitle = "")
    {
        int rows = z.GetLength(0), cols = z.GetLength(1);
        CheckLength(title, "z columns", cols, "xLabels", xLabels.Count);
        CheckLength(title, "z rows", rows, "yLabels", yLabels.Count);
        var fig = Figure(title, xTitle, yTitle);
        string xName = Name(xTitle, "x"), yName = Name(yTitle, "y");
        var zs = new JsonArray();
        var text = new JsonArray();
        for (int r = 0; r < rows; r++)
        {
            var zr = new JsonArray();
            var tr = new JsonArray();
            for (int c = 0; c < cols; c++)
            {
                zr.Add(Number(z[r, c]));
                tr.Add(HoverLine([$"{xName}: {xLabels[c]}", $"{yName}: {yLabels[r]}"]));
            }
            zs.Add(zr);
            text.Add(tr);
        }
        var scale = new JsonArray();
        for (int i = 0; i < RdBu.Count; i++) scale.Add(new JsonArray(JsonValue.Create((double)i / (RdBu.Count - 1)), RdBu[i]));
        fig.Traces.Add(new JsonObject
        {
            ["type"] = "heatmap",
            ["z"] = zs,
            ["x"] = CategoryAxis(fig, "xaxis", xLabels),
            ["y"] = CategoryAxis(fig, "yaxis", yLabels),
            ["colorscale"] = scale,
            ["zmid"] = 0,
            ["text"] = text,
            ["hovertemplate"] = "%{text}<br>value: %{z:.4g}<extra></extra>",
        });
        var yaxis = fig.Layout["yaxis"]!.AsObject();
        yaxis["autorange"] = "reversed"; // imshow: first row on top
        yaxis["scaleanchor"] = "x";      // imshow's default equal aspect
        yaxis["constrain"] = "domain";
        fig.Layout["xaxis"]!["constrain"] = "domain";
        fig.Layout["xaxis"]!["showgrid"] = false;
        yaxis["showgrid"] = false;
        return fig;
    }

    /// <summary>Escapes text for plotly's pseudo-HTML (titles, ticks, hover): a token "&lt;br&gt;" stays literal.</summary>
    public static string PlotText(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");

    static PlotFigure Figure(string title, string xTitle, string yTitle)
    {
        var fig = new PlotFigure(title);
        var l = fig.Layout;
        l["title"]!["x"] = 0.05;
        l["font"] = new JsonObject { ["color"] = "#2a3f5f" };
        l["paper_bgcolor"] = "white";
        l["plot_bgcolor"] = "#E5ECF6";
        l["colorway"] = Strings(Colorway);
        l["hoverlabel"] = new JsonObject { ["align"] = "left" };
        l["xaxis"] = Axis(xTitle);
        l["yaxis"] = Axis(yTitle);
        return fig;
    }

    static JsonObject Axis(string title) => new()
    {
        ["title"] = new JsonObject { ["text"] = PlotText(title) },
        ["gridcolor"] = "white", ["linecolor"] = "white", ["zerolinecolor"] = "white", ["automargin"] = true,
    };

    static void AddLines(PlotFigure fig, string title, JsonArray x, IReadOnlyList<string> xLabels, IReadOnlyList<PlotSeries> series, string xTitle, string yTitle)
    {
        foreach (var s in series)
        {
            CheckLength(title, $"series '{s.Name}'", s.Values.Count, "x", x.Count);
            fig.Traces.Add(new JsonObject
            {
                ["type"] = "scatter",
                ["mode"] = "lines",
                ["name"] = PlotText(s.Name),
                ["x"] = x.DeepClone(),
                ["y"] = Numbers(s.Values),
                ["text"] = Hover(xLabels.Select(l => new[] { s.Name, $"{Name(xTitle, "x")}: {l}", $"{Name(yTitle, "y")}: " })),
                ["hovertemplate"] = "%{text}%{y:.4g}<extra></extra>",
            });
        }
        fig.Layout["showlegend"] = series.Count > 1;
    }

    // Numeric positions 0..n-1 with the labels as tick text (see remarks); returns the positions.
    static JsonArray CategoryAxis(PlotFigure fig, string axis, IReadOnlyList<string> labels)
    {
        var positions = new JsonArray([.. Enumerable.Range(0, labels.Count).Select(i => (JsonNode)i)]);
        var a = fig.Layout[axis]!.AsObject();
        a["tickmode"] = "array";
        a["tickvals"] = positions.DeepClone();
        a["ticktext"] = Strings(labels);
        return positions;
    }

    static string Name(string title, string fallback) => title.Length == 0 ? fallback : title;

    static JsonArray Strings(IEnumerable<string> items) => new([.. items.Select(s => (JsonNode)PlotText(s))]);

    // Hover text: escaped lines joined by plotly's line break; the value follows from the hovertemplate.
    static string HoverLine(string[] lines) => string.Join("<br>", lines.Select(PlotText));

    static JsonArray Hover(IEnumerable<string[]> points) => new([.. points.Select(p => (JsonNode)HoverLine(p))]);

    static JsonArray Numbers(IEnumerable<float> values) => new([.. values.Select(Number)]);

    /// <summary>A JSON number, or null (a gap in plotly) for NaN/Infinity, which JSON cannot hold.</summary>
    internal static JsonNode? Number(float v) => float.IsFinite(v) ? JsonValue.Create(v) : null;

    static void CheckLength(string title, string what, int n, string against, int m)
    {
        if (n != m) throw new SharpLensException($"Figure '{title}': {what} has {n} entries but {against} has {m}; they must match.");
    }
}
