import AppBar from '@mui/material/AppBar';
import Switch from '@mui/material/Switch';
import FormControlLabel from '@mui/material/FormControlLabel';
import { useColorScheme } from '@mui/material/styles';
import { Badge } from '@/components/ui/badge';
import { cn } from '@/lib/utils';
import { useFeed } from './feed';
import { Alerts } from './views/Alerts';
import { Learner } from './views/Learner';
import { ModelMatrix } from './views/ModelMatrix';
import { Scheduler } from './views/Scheduler';
import { Traces } from './views/Traces';

const VIEWS = [
  ['matrix', 'Model Matrix'],
  ['alerts', 'Alerts'],
  ['traces', 'Traces'],
  ['learner', 'Learner'],
  ['scheduler', 'Scheduler'],
] as const;
type View = (typeof VIEWS)[number][0];

function currentView(): View {
  const name = location.pathname.replace(/^\/console\/?/, '').split('/')[0];
  return (VIEWS.find(([id]) => id === name)?.[0] ?? 'matrix') as View;
}

export function App() {
  const feed = useFeed();
  const view = currentView();
  const { mode, setMode } = useColorScheme();
  const dark = mode === 'dark';
  return (
    <div className="min-h-screen">
      <AppBar position="static" color="primary" enableColorOnDark elevation={0} component="header">
        <div className="flex flex-wrap items-center gap-4 px-4 py-2">
          <h1 className="text-xl font-bold">Symphony console</h1>
          <nav aria-label="views" className="flex flex-wrap gap-1">
            {VIEWS.map(([id, label]) => (
              <a
                key={id}
                href={`/console/${id}`}
                aria-current={id === view ? 'page' : undefined}
                className={cn(
                  'rounded-md px-3 py-1 text-md font-bold text-primary-foreground',
                  id === view ? 'bg-background text-foreground' : 'hover:underline',
                )}
              >
                {label}
              </a>
            ))}
          </nav>
          <span className="ml-auto" />
          {feed.error && <Badge variant="warning" role="status">{feed.error}</Badge>}
          <FormControlLabel
            control={<Switch checked={dark} onChange={(e) => setMode(e.target.checked ? 'dark' : 'light')} color="default" />}
            label="dark"
          />
        </div>
      </AppBar>
      <main className="p-4">
        {view === 'matrix' && <ModelMatrix feed={feed} />}
        {view === 'alerts' && <Alerts />}
        {view === 'traces' && <Traces />}
        {view === 'learner' && <Learner />}
        {view === 'scheduler' && <Scheduler feed={feed} />}
      </main>
    </div>
  );
}
