using System.Text.Json.Nodes;

namespace SharpLens.Visualization;

/// <summary>
/// A plotly figure in plotly.js's own JSON schema: a list of traces and a layout. Build one with <see cref="Plots"/>,
/// adjust <see cref="Traces"/>/<see cref="Layout"/> freely (any plotly.js attribute works), add it to an
/// <see cref="HtmlReport"/>.
/// </summary>
public sealed class PlotFigure
{
    /// <summary>Creates an empty figure whose layout carries <paramref name="title"/>.</summary>
    public PlotFigure(string title)
    {
        Title = title;
        Layout = new JsonObject { ["title"] = new JsonObject { ["text"] = Plots.PlotText(title) } };
    }

    /// <summary>The figure title as given (plain text).</summary>
    public string Title { get; }

    /// <summary>plotly.js traces ("data").</summary>
    public JsonArray Traces { get; } = [];

    /// <summary>plotly.js layout.</summary>
    public JsonObject Layout { get; }

    /// <summary>
    /// <c>{"data": [...], "layout": {...}}</c>, safe to inline in a script element (&lt; &gt; &amp; and quotes are \u-escaped).
    /// Throws <see cref="SharpLensException"/> when a value cannot be JSON (a NaN/Infinity put in by hand: use null).
    /// </summary>
    public string ToJson()
    {
        try { return new JsonObject { ["data"] = Traces.DeepClone(), ["layout"] = Layout.DeepClone() }.ToJsonString(); }
        catch (ArgumentException e)
        {
            throw new SharpLensException($"Figure '{Title}' cannot be written as JSON: {e.Message.Split('.')[0]}. Use null for missing values (Plots does this for NaN/Infinity).", e);
        }
    }
}

/// <summary>One named line of a <see cref="Plots.Line(string, IReadOnlyList{string}, IReadOnlyList{PlotSeries}, string, string)"/> plot.</summary>
/// <param name="Name">Legend entry.</param>
/// <param name="Values">One value per x position; NaN/Infinity become gaps.</param>
public sealed record PlotSeries(string Name, IReadOnlyList<float> Values);
